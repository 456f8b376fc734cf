"""Recording short clips to label and train on (``[record]``; off unless ``enabled``).

Three parts, so that neither a source thread nor the event loop ever waits on a disk:

- :class:`FrameRing` (one per recording source, fed by its source thread): the last few seconds of
  frames, downscaled and capped by bytes and age (the pre-roll); while a clip is open it also hands
  each frame to the writer's bounded queue (a full queue drops the frame, counted).
- :class:`ClipWriter` (one thread): encodes each clip to a temp name, renames it to ``<name>.mp4``
  after its sidecar ``<name>.json`` is in place, then deletes the oldest clips over the quota.
- :class:`Recorder` (an output, on the loop): turns events, unsure windows and requests into clips
  and keeps what the sidecar says about the predictions during each.

Clip names are ``<source>-<YYYYMMDD>_<HHMMSS>-<n>``: with README's ``--group-pattern '^[^_]+'`` the
group is the source and the day, so a day's clips of one camera never straddle train and test.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .errors import ConfigError
from .messages import IDLE, UNKNOWN, Event, ModelIds, OutputStatus, Prediction, Status

if TYPE_CHECKING:
    from .config import RecordConfig

log = logging.getLogger("edgevid.record")

SUFFIX = ".mp4"
PART = ".part.mp4"  # a clip being written: hidden (leading dot) and never listed
NAME = re.compile(r"^[A-Za-z0-9.-]+-\d{8}_\d{6}-\d+$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A clip whose end passed this long ago without a new frame (a stalled source) is closed anyway.
CLOSE_AFTER_S = 2.0
#: An event's start message comes this long after the frames it starts at (a window, min_duration and
#: the latency): the ring keeps pre_s more than this, so an event's clip has its whole pre-roll.
EVENT_LAG_S = 4.0
PREDICTIONS_KEPT = 400  # per clip, in its sidecar


class ClipError(Exception):
    """A labelling or recording request that cannot be done (a one-line reason for the HTTP answer)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def group_part(source: str) -> str:
    """A source id as the part of a clip name before its first ``_``: ``_`` would split the group."""
    return source.replace("_", "-")


def clip_name(source: str, wall: float, n: int) -> str:
    return f"{group_part(source)}-{time.strftime('%Y%m%d_%H%M%S', time.localtime(wall))}-{n}"


def _number(name: str) -> int:
    """The ``n`` of a :func:`clip_name` (0 for a name that is not one)."""
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


@dataclass
class Clip:
    """One clip being recorded: its interval on the wall clock (extended by the loop while an event
    lasts) and what the writer and the sidecar need."""

    name: str
    source: str
    start: float
    end: float  # inf while an event is open
    hard_end: float  # start + max_s
    triggers: list[str]
    label: str | None = None  # asked for on request (`edgevid record --label`): the page offers it first
    begun: bool = False
    ended: bool = False
    queued: int = 0  # frames handed to the writer (source thread)
    taken: int = 0  # frames the writer took (writer thread)
    dropped: int = 0  # frames the full queue refused
    first: tuple[float, float | None] | None = None  # (wall, media) of its first and last frame
    last: tuple[float, float | None] | None = None
    predictions: list[dict] = field(default_factory=list)  # appended on the loop
    events: list[dict] = field(default_factory=list)  # the events it records: id, label, started_at

    def until(self) -> float:
        return min(self.end, self.hard_end)


@dataclass
class RecordStats:
    """What ``/api/clips`` and the output's status report."""

    clips_written: int = 0
    bytes_written: int = 0
    frames_written: int = 0
    frames_dropped: int = 0  # the writer's queue was full
    clips_empty: int = 0  # a trigger whose interval got no frame (source down)
    clips_failed: int = 0  # the encoder failed
    deleted_by_quota: int = 0
    ring_evicted: int = 0  # pre-roll frames pushed out by the byte cap (not by age)
    last_error: str | None = None


class FrameRing:
    """A source's pre-roll and its open clip. ``offer`` runs on the source thread (a resize and a
    deque append); ``want``/``expire`` run on the loop; one lock guards the open clip."""

    def __init__(self, source: str, cfg: "RecordConfig", writer: "ClipWriter") -> None:
        self.source, self.cfg, self.writer = source, cfg, writer
        self.interval = 1.0 / cfg.fps
        self.keep_s = cfg.pre_s + EVENT_LAG_S
        self.max_bytes = int(cfg.ring_mb * 1e6)
        self.frames: deque[tuple[float, float | None, np.ndarray]] = deque()
        self.bytes = 0
        self._due = -float("inf")  # monotonic time the next kept frame is due (a fixed schedule: no drift)
        self.lock = threading.Lock()
        self.clip: Clip | None = None

    def wants(self, mono: float) -> bool:
        """Whether the next frame is due (the source thread retrieves it only then)."""
        return mono >= self._due

    def offer(self, frame: np.ndarray, mono: float, wall: float, media: float | None) -> None:
        """Source thread: keep a due frame (downscaled) and hand it to the open clip."""
        if mono < self._due:
            return
        # On schedule, the next is one interval after this one was due; far behind, one after now.
        self._due = self._due + self.interval if mono - self._due < self.interval else mono + self.interval
        h, w = frame.shape[:2]
        if w > self.cfg.max_width:
            size = (self.cfg.max_width & ~1, max(2, round(h * self.cfg.max_width / w)) & ~1)
            # Bilinear: a tenth of INTER_AREA's cost at 640 -> 480 (2.2 ms a frame here), on the source's thread
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        else:
            frame = frame.copy()  # the capture may reuse its buffer
        self.frames.append((wall, media, frame))
        self.bytes += frame.nbytes
        while self.frames and (self.bytes > self.max_bytes or self.frames[0][0] < wall - self.keep_s):
            old = self.frames.popleft()
            self.bytes -= old[2].nbytes
            if self.bytes > self.max_bytes:
                self.writer.stats.ring_evicted += 1
        with self.lock:
            clip = self.clip
            if clip is None:
                return
            if not clip.begun:
                clip.begun = True
                for item in self.frames:
                    if clip.start <= item[0] <= clip.until():
                        self._hand(clip, item)
            elif wall <= clip.until():
                self._hand(clip, (wall, media, frame))
            if wall >= clip.until():
                self._close(clip)

    def _hand(self, clip: Clip, item: tuple[float, float | None, np.ndarray]) -> None:
        if self.writer.put(clip, item[2]):
            clip.queued += 1
            clip.first = clip.first or (item[0], item[1])
            clip.last = (item[0], item[1])
        else:
            clip.dropped += 1

    def _close(self, clip: Clip) -> None:
        """Under the lock: no frame joins ``clip`` any more; the writer finishes it."""
        clip.ended = True
        self.clip = None
        if clip.begun:
            self.writer.put(clip, None)
        else:
            self.writer.stats.clips_empty += 1

    def want(self, start: float, end: float, trigger: str, label: str | None = None) -> Clip:
        """Loop: record ``start..end`` (wall clock): a new clip, or the open one extended."""
        with self.lock:
            clip = self.clip
            if clip is None:
                clip = Clip(
                    clip_name(self.source, start, self.writer.next_number()),
                    self.source,
                    start,
                    end,
                    start + self.cfg.max_s,
                    [trigger],
                    label,
                )
                self.clip = clip
            else:
                clip.end = max(clip.end, end)
                if trigger not in clip.triggers:
                    clip.triggers.append(trigger)
                clip.label = clip.label or label
            return clip

    def finish(self, end: float) -> None:
        """Loop: an event ended; the open clip ends ``post_s`` later (unless something else extends it)."""
        with self.lock:
            if self.clip is not None and self.clip.end == float("inf"):
                self.clip.end = end

    def expire(self, now: float) -> None:
        """Loop: close a clip whose end passed while no frame came (a stalled or paused source)."""
        with self.lock:
            if self.clip is not None and now > self.clip.until() + CLOSE_AFTER_S:
                self._close(self.clip)


class Encoder:
    """Frames to a playable MP4: ffmpeg's H.264 (plays in browsers) when ffmpeg has libx264, else
    OpenCV's MPEG-4 part 2 (plays in VLC and trains the same; browsers may not play it)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], ffmpeg: str | None) -> None:
        self.path, self.size = path, size
        self.proc: subprocess.Popen | None = None
        self.cv: cv2.VideoWriter | None = None
        if ffmpeg is not None:
            cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo"]
            cmd += ["-pix_fmt", "bgr24", "-s", f"{size[0]}x{size[1]}", "-r", f"{fps:g}", "-i", "-", "-an"]
            cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
            self.proc = subprocess.Popen(
                cmd + ["-f", "mp4", str(path)], stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
        else:
            self.cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self.cv.isOpened():
                raise OSError(f"OpenCV cannot write {path}")

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[1::-1] != self.size:  # a source reopened at another size
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        elif self.cv is not None:
            self.cv.write(frame)

    def close(self) -> None:
        """Finish the file; an encoder failure is an OSError with ffmpeg's last words."""
        if self.cv is not None:
            self.cv.release()
            return
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stderr is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        said = self.proc.stderr.read().decode("utf-8", "replace").strip()
        if self.proc.wait(60) != 0:
            raise OSError(f"ffmpeg exited {self.proc.returncode}: {said.splitlines()[-1] if said else ''}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def prepare_dirs(cfg: "RecordConfig") -> Path:
    """Create record.dir and record.dataset (``config check`` and ``run``: one line naming the key)."""
    for key, folder in (("record.dir", Path(cfg.dir)), ("record.dataset", cfg.dataset_dir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot create {exc.filename}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"{key}: {folder} is not writable")
    return Path(cfg.dir)


def has_x264(ffmpeg: str | None) -> bool:
    if ffmpeg is None:
        return False
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return " libx264 " in out


class ClipWriter:
    """The thread that writes clips: never blocks a source (a bounded queue, drops counted), writes
    each clip under a temp name and renames it into place after its sidecar, keeps the quota."""

    def __init__(self, cfg: "RecordConfig", models: ModelIds, model_name: str) -> None:
        self.cfg, self.models, self.model_name = cfg, models, model_name
        self.dir = prepare_dirs(cfg)
        self.ffmpeg = shutil.which("ffmpeg") if has_x264(shutil.which("ffmpeg")) else None
        self.stats = RecordStats()
        self.queue: queue.Queue[tuple[Clip, np.ndarray | None] | None] = queue.Queue(cfg.queue)
        self._open: dict[str, tuple[Clip, Encoder | None, Path]] = {}
        self._n_lock = threading.Lock()
        for _, part in self._existing(PART):  # a crash mid-clip leaves a part: never a clip
            part.unlink(missing_ok=True)
        # Numbers go on from the clips already here: a restart within the second a clip started
        # must not give a new clip that clip's name (and replace it).
        self._n = max((_number(p.name[: -len(SUFFIX)]) for _, p in self._existing(SUFFIX)), default=0)
        self.thread = threading.Thread(target=self._run, name="edgevid-record", daemon=True)
        self.thread.start()

    def next_number(self) -> int:
        with self._n_lock:
            self._n += 1
            return self._n

    def put(self, clip: Clip, frame: np.ndarray | None) -> bool:
        """Any thread: queue a frame (None: the clip's end) without waiting; False when full."""
        try:
            self.queue.put_nowait((clip, frame))
            return True
        except queue.Full:
            if frame is not None:
                self.stats.frames_dropped += 1
            return False  # a lost end marker: the writer closes an ended clip once its frames are in

    def stop(self) -> None:
        """Finish what is queued, then end (the thread is a daemon: a stuck encoder cannot hold exit)."""
        while True:
            try:
                self.queue.put(None, timeout=1.0)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    return

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                clip, frame = item
                if frame is None:
                    self._finish(clip.name)
                else:
                    clip.taken += 1
                    self._frame(clip, frame)
            for name, (clip, _, _) in list(self._open.items()):
                if clip.ended and clip.taken >= clip.queued:
                    self._finish(name)
        for name in list(self._open):
            self._finish(name)

    def _frame(self, clip: Clip, frame: np.ndarray) -> None:
        if clip.name not in self._open:
            part = self.dir / f".{clip.name}{PART}"
            try:
                enc: Encoder | None = Encoder(part, self.cfg.fps, (frame.shape[1], frame.shape[0]), self.ffmpeg)
            except OSError as exc:
                self._failed(clip, f"cannot start the encoder: {exc}")
                enc = None
            self._open[clip.name] = (clip, enc, part)
        _, enc, _ = self._open[clip.name]
        if enc is None:
            return
        try:
            enc.write(frame)
            self.stats.frames_written += 1
        except OSError as exc:
            enc.kill()
            self._open[clip.name] = (clip, None, self._open[clip.name][2])
            self._failed(clip, f"writing: {exc}")

    def _failed(self, clip: Clip, why: str) -> None:
        self.stats.clips_failed += 1
        self.stats.last_error = f"{clip.name}: {why}"
        log.error("record: %s", self.stats.last_error)

    def _finish(self, name: str) -> None:
        got = self._open.pop(name, None)
        if got is None:
            return
        clip, enc, part = got
        if enc is None:
            part.unlink(missing_ok=True)
            return
        try:
            enc.close()
            sidecar = self.dir / f"{name}.json"
            tmp = self.dir / f".{name}.json.tmp"
            tmp.write_text(json.dumps(self.sidecar(clip), indent=1) + "\n")
            os.replace(tmp, sidecar)
            size = part.stat().st_size
            os.replace(part, self.dir / f"{name}{SUFFIX}")
        except OSError as exc:
            enc.kill()
            part.unlink(missing_ok=True)
            (self.dir / f"{name}.json").unlink(missing_ok=True)
            self._failed(clip, str(exc))
            return
        self.stats.clips_written += 1
        self.stats.bytes_written += size
        log.info("record: %s (%s, %d frames, %.0f kB)", name, ", ".join(clip.triggers), clip.taken, size / 1e3)
        self._quota()

    def sidecar(self, clip: Clip) -> dict[str, Any]:
        """What the labelling page and a trainer need to know of a clip."""
        first, last = clip.first or (clip.start, None), clip.last or (clip.start, None)
        preds = list(clip.predictions)
        counted = Counter(p["label"] for p in preds if p["label"] not in (IDLE, UNKNOWN))
        predicted = counted.most_common(1)[0][0] if counted else (preds[0]["label"] if preds else None)
        best = max((p for p in preds if p["label"] == predicted), key=lambda p: p["score"], default=None)
        return {
            "name": clip.name,
            "source": clip.source,
            "trigger": clip.triggers[0],
            "triggers": clip.triggers,
            "requested_label": clip.label,
            "start": round(first[0], 3),
            "end": round(last[0], 3),
            "media_start": first[1],
            "media_end": last[1],
            "frames": clip.taken,
            "dropped_frames": clip.dropped,
            "fps": self.cfg.fps,
            "codec": "h264" if self.ffmpeg else "mp4v",
            "predicted": predicted,
            "score": best["score"] if best else None,
            "top": best["top"] if best else [],
            "predictions": preds,
            "events": clip.events,
            "head": self.models.head,
            "model": self.model_name,
            "models": self.models.model_dump(),
        }

    def _existing(self, suffix: str) -> list[tuple[float, Path]]:
        out = []
        for p in self.dir.iterdir():
            if p.name.endswith(suffix) and (suffix == PART) == p.name.startswith("."):
                try:
                    out.append((p.stat().st_mtime, p))
                except OSError:
                    pass
        return sorted(out)

    def _quota(self) -> None:
        """Delete the oldest unlabelled clips (and sidecars) while they take more than quota_mb."""
        clips = self._existing(SUFFIX)
        total = sum(p.stat().st_size for _, p in clips if p.exists())
        limit = self.cfg.quota_mb * 1e6
        for _, p in clips:
            if total <= limit:
                break
            try:
                total -= p.stat().st_size
                p.unlink()
                p.with_suffix(".json").unlink(missing_ok=True)
                self.stats.deleted_by_quota += 1
                log.info("record: %s deleted (quota %g MB)", p.name, self.cfg.quota_mb)
            except OSError:
                pass


class Recorder:
    """The recording output: on the event loop, it turns events, unsure windows and requests into
    clips on the sources' rings, and collects each clip's predictions for its sidecar."""

    name = "record"

    def __init__(self, cfg: "RecordConfig", sources: list[str], models: ModelIds, model_name: str) -> None:
        self.cfg = cfg
        self.writer = ClipWriter(cfg, models, model_name)
        self.rings = {sid: FrameRing(sid, cfg, self.writer) for sid in sources}
        self.min_score: dict[str, float | None] = {}
        self._unsure_at: dict[str, float] = {}
        self._recent: dict[str, Clip] = {}  # each source's latest clip: late predictions still reach it
        # Each source's last predictions: a clip that starts (an event, a request) gets those it covers.
        self._history: dict[str, deque[dict]] = {sid: deque(maxlen=64) for sid in sources}

    # -- as an output ---------------------------------------------------------------------------
    def send(self, topic: str, message) -> None:
        if isinstance(message, Prediction):
            self._prediction(message)
        elif isinstance(message, Event):
            self._event(message)
        elif isinstance(message, Status):
            now = time.time()
            for ring in self.rings.values():
                ring.expire(now)

    def status(self) -> OutputStatus:
        s = self.writer.stats
        return OutputStatus(
            connected=self.writer.thread.is_alive(),
            sent=s.clips_written,
            dropped=s.frames_dropped,
            queued=self.writer.queue.qsize(),
            reconnects=0,
            last_error=s.last_error,
        )

    def close(self) -> None:
        for ring in self.rings.values():
            ring.expire(float("inf"))
        threading.Thread(target=self.writer.stop, daemon=True).start()

    async def wait_closed(self) -> None:
        import asyncio

        await asyncio.to_thread(self.writer.thread.join, 30.0)

    # -- triggers ---------------------------------------------------------------------------------
    def _prediction(self, p: Prediction) -> None:
        ring = self.rings.get(p.source)
        if ring is None:
            return
        entry = {
            "seq": p.seq,
            "window_start": p.window_start,
            "window_end": p.window_end,
            "label": p.label,
            "score": p.score,
            "top": [s.model_dump() for s in p.top[:3]],
        }
        self._history[p.source].append(entry)
        for clip in {id(c): c for c in (ring.clip, self._recent.get(p.source)) if c is not None}.values():
            overlaps = p.window_end >= clip.start and p.window_start <= clip.until()
            if overlaps and len(clip.predictions) < PREDICTIONS_KEPT:
                clip.predictions.append(entry)
        if not self.cfg.unsure or p.label == IDLE or not p.top:
            return
        floor = self.min_score.get(p.source)
        margin = p.top[0].score - (p.top[1].score if len(p.top) > 1 else 0.0)
        unsure = (floor is not None and p.top[0].score < floor) or margin < self.cfg.margin
        if unsure and p.window_end - self._unsure_at.get(p.source, -float("inf")) >= self.cfg.unsure_every_s:
            self._unsure_at[p.source] = p.window_end
            self._keep(ring.want(p.window_start - self.cfg.pre_s, p.window_end + self.cfg.post_s, "unsure"))

    def _event(self, e: Event) -> None:
        ring = self.rings.get(e.source)
        if ring is None or not self.cfg.events:
            return
        if e.phase == "end":
            ring.finish(e.window_end + self.cfg.post_s)
            return
        if e.phase == "update" and ring.clip is None:
            return  # a long event: its clip (max_s from its start) is done; no clip of its middle
        clip = ring.want(e.started_at - self.cfg.pre_s, float("inf"), f"event:{e.label}")
        if all(x["id"] != e.id for x in clip.events):
            clip.events.append({"id": e.id, "label": e.label, "started_at": e.started_at})
        self._keep(clip)

    def _keep(self, clip: Clip) -> Clip:
        """A clip just asked for: late predictions still reach it, and it gets the recent ones it covers."""
        if self._recent.get(clip.source) is not clip:
            self._recent[clip.source] = clip
            seen = {e["seq"] for e in clip.predictions}
            for e in self._history[clip.source]:
                if e["seq"] not in seen and e["window_end"] >= clip.start and e["window_start"] <= clip.until():
                    clip.predictions.append(e)
            clip.predictions.sort(key=lambda e: e["seq"])
        return clip

    def request(self, source: str, seconds: float, label: str | None = None) -> dict[str, Any]:
        """A clip of the next ``seconds`` (the page's button, ``edgevid record``)."""
        ring = self.rings.get(source)
        if ring is None:
            raise ClipError(f"source {source!r} does not record (record.enabled, record.sources)", 404)
        if not 0 < seconds <= self.cfg.max_s:
            raise ClipError(f"seconds: expected 0 < seconds <= record.max_s ({self.cfg.max_s:g}), got {seconds:g}")
        if label is not None and not LABEL.match(label):
            raise ClipError(f"label: {label!r} is not a folder name (letters, digits, _ . -; at most 64)")
        now = time.time()
        clip = self._keep(ring.want(now, now + seconds, "request", label))
        return {"clip": clip.name, "source": source, "until": round(clip.until(), 3)}

    def stats_json(self) -> dict[str, Any]:
        s = self.writer.stats
        return {
            "clips_written": s.clips_written,
            "bytes_written": s.bytes_written,
            "frames_written": s.frames_written,
            "frames_dropped": s.frames_dropped,
            "clips_empty": s.clips_empty,
            "clips_failed": s.clips_failed,
            "deleted_by_quota": s.deleted_by_quota,
            "ring_evicted": s.ring_evicted,
            "queued": self.writer.queue.qsize(),
            "recording": {sid: r.clip.name for sid, r in self.rings.items() if r.clip is not None},
            "codec": "h264" if self.writer.ffmpeg else "mp4v",
            "last_error": s.last_error,
        }


# -- labelling (run off the loop: small file operations) -----------------------------------------


def list_clips(folder: Path) -> list[dict[str, Any]]:
    """The clips waiting for a label, newest first, each with its sidecar (what the page lists)."""
    out = []
    if not Path(folder).is_dir():
        return []
    for p in Path(folder).glob(f"*{SUFFIX}"):
        if p.name.startswith(".") or not NAME.match(p.stem):
            continue
        try:
            side = json.loads(p.with_suffix(".json").read_text())
            side["bytes"] = p.stat().st_size
        except (OSError, ValueError):
            continue  # deleted meanwhile, or not one of ours
        side.pop("predictions", None)
        out.append(side)
    return sorted(out, key=lambda c: c.get("start") or 0.0, reverse=True)


def _pending(folder: Path, name: str) -> Path:
    if not NAME.match(name):
        raise ClipError(f"clip: {name!r} is not a clip name", 404)
    path = Path(folder) / f"{name}{SUFFIX}"
    if not path.is_file():
        raise ClipError(f"clip: no clip {name!r} waiting (labelled, discarded or deleted by the quota)", 404)
    return path


def _move(src: Path, dst: Path) -> None:
    """Rename, or across file systems copy to a temp name beside ``dst`` and rename it into place."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV
            raise
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        src.unlink()


def assign(folder: Path, dataset: Path, name: str, label: str) -> Path:
    """Move a clip and its sidecar (now saying its label) into ``<dataset>/<label>/``: the folder
    layout ``tools.experiment --dataset folders`` reads. The video moves last: a listed clip in the
    dataset always has its sidecar."""
    if not LABEL.match(label):
        raise ClipError(f"label: {label!r} is not a folder name (letters, digits, _ . -; at most 64)")
    video = _pending(folder, name)
    dest = Path(dataset) / label
    if (dest / f"{name}{SUFFIX}").exists():
        raise ClipError(f"label: {dest / name}{SUFFIX} exists already; not replaced", 409)
    dest.mkdir(parents=True, exist_ok=True)
    side_src = video.with_suffix(".json")
    try:
        side = json.loads(side_src.read_text())
    except (OSError, ValueError):
        side = {"name": name}
    side.update(label=label, labelled_at=round(time.time(), 3))
    tmp = dest / f".{name}.json.tmp"
    tmp.write_text(json.dumps(side, indent=1) + "\n")
    os.replace(tmp, dest / f"{name}.json")
    _move(video, dest / f"{name}{SUFFIX}")
    side_src.unlink(missing_ok=True)
    return dest / f"{name}{SUFFIX}"


def discard(folder: Path, name: str) -> None:
    """Delete a clip and its sidecar for good."""
    video = _pending(folder, name)
    video.unlink()
    video.with_suffix(".json").unlink(missing_ok=True)


def clip_path(folder: Path, name: str) -> Path:
    """The file of a waiting clip (the page's player), or a 404 ClipError."""
    return _pending(folder, name)
