"""Live frame sources for the daemon: camera, file, stream or pipe, with timeouts, reconnects and pacing.

Each source runs in its own thread (OpenCV reads block). It times every frame (the file's or the
stream's own timestamps while sane, arrival otherwise), fills its window slots with the nearest
frames (:class:`~edgevid.timing.SlotFiller`), and converts only the frames that fill a slot,
straight to the extractor's input size. What it hands over goes to a :class:`Sink`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import cv2
import numpy as np

from .capture import SINGLE_THREAD_PIXELS, check_file, open_video
from .config import SourceConfig, SourceTiming
from .errors import InputError
from .pipe import PipeCapture, PipeSpec, command_problem
from .timing import Backoff, FileClock, Fill, Liveness, SlotFiller, StreamClock
from .windows import FrameInfo

log = logging.getLogger("edgevid.sources")

#: File frame rates outside this range are not believed (a header saying 0.001 fps would make
#: one frame last 17 minutes).
FPS_RANGE = (1.0, 240.0)


#: Files with frames up to this size are decoded on the source's own thread: FFmpeg's frame threads
#: (one per core by default) cost more CPU in hand-offs than a small frame's decode (320x240 MPEG-4:
#: ~0.35 ms per frame with two decoder threads, ~0.2 ms with one, measured), and the daemon runs a
#: thread per source already. Larger files keep FFmpeg's threads (above 4K one, as ``classify``).
ONE_DECODER_THREAD_PIXELS = 640 * 480


@dataclass
class Captured(FrameInfo):
    """A frame that fills a slot, with its image already at the extractor's input size."""

    image: np.ndarray | None = field(default=None, repr=False)
    #: (previous frame, this frame) as small grey images, for a head that reads the motion stream
    #: (no previous frame: the first of a segment, or the one after a paused stretch).
    motion_pair: tuple[np.ndarray | None, np.ndarray] | None = field(default=None, repr=False)


class Sink(Protocol):
    """Where a source's frames go (the daemon)."""

    def segment(self, source: str) -> None:
        """A new stretch of video starts (opened, reopened or looped): no window spans the seam."""

    def fills(self, source: str, fills: list[Fill[Captured]], new: list[Captured], paused: bool) -> None:
        """Slots settled by the last frame, and the frames in them not handed over before (to extract)."""

    def paused(self, source: str) -> bool:
        """True while overload keeps this source's frames from the extractor."""


@dataclass
class SourceStats:
    state: str = "starting"
    frames_in: int = 0
    sampled: int = 0  # distinct frames handed to the extractor
    extracted: int = 0
    dropped: int = 0
    reconnects: int = 0
    predictions: int = 0
    loop: int = 0
    last_error: str | None = None


class SourceError(Exception):
    """A source cannot be opened or read; the message is one line for logs and status."""


@dataclass
class Opened:
    cap: cv2.VideoCapture | PipeCapture
    width: int
    height: int
    fps: float
    backend: str


def open_capture(cfg: SourceConfig) -> Opened:
    kind = cfg.resolved_kind()
    if kind == "pipe":
        try:
            pipe = PipeCapture(PipeSpec(cfg.uri, cfg.pixel_format, cfg.width, cfg.height, cfg.fps))
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot start command: {exc}") from None
        return Opened(pipe, cfg.width or 0, cfg.height or 0, cfg.fps, f"pipe {cfg.pixel_format}")
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout * 1000)]
    if kind == "camera":
        # Camera backends (V4L2) may not support the timeout properties, and OpenCV fails the whole
        # open when a backend rejects an open() parameter: set the read timeout best-effort instead
        # (the V4L2 driver bounds a read by itself).
        target = int(cfg.uri) if cfg.uri.isdigit() else cfg.uri
        cap = cv2.VideoCapture(target, cv2.CAP_ANY)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, cfg.read_timeout * 1000)
    elif kind == "file":
        try:
            check_file(cfg.uri)  # a FIFO or a folder would block or fail inside OpenCV
        except InputError as exc:
            raise SourceError(str(exc)) from None
        cap = open_video(cfg.uri, *params, cv2.CAP_PROP_N_THREADS, 1)
        if cap.isOpened() and ONE_DECODER_THREAD_PIXELS < cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT) <= SINGLE_THREAD_PIXELS:
            cap.release()  # a large frame: FFmpeg's own decoder threads keep up with it
            cap = open_video(cfg.uri, *params)
    else:
        cap = cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open {kind} {cfg.uri!r}")
    try:
        backend = cap.getBackendName()
    except cv2.error:
        backend = "?"
    return Opened(cap, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS) or 0.0, backend)


def source_problem(cfg: SourceConfig) -> str | None:
    """What would keep a source from opening, found without opening it (for ``config check``)."""
    if cfg.resolved_kind() == "file":
        try:
            check_file(cfg.uri)
        except InputError as exc:
            return str(exc)
    if cfg.resolved_kind() == "pipe":
        return command_problem(cfg.uri)
    return None


@dataclass
class _Outcome:
    frames: int = 0
    ended: bool = False  # end of file / stream
    error: str | None = None


class FrameSource(threading.Thread):
    """Reads one source until stopped, reconnecting with backoff; reports to ``sink``."""

    def __init__(self, cfg: SourceConfig, timing: SourceTiming, sink: Sink, stop: threading.Event,
                 convert: Callable[[np.ndarray], np.ndarray], *, clock: Callable[[], float] = time.monotonic,
                 motion_grey: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__(name=f"source-{cfg.id}", daemon=True)
        # OpenCV's own thread pool (process-wide) splits each small resize, colour conversion and
        # flow across a second thread that then spins: for a 320x240 frame that costs more CPU than
        # it saves, and the daemon already runs a thread per source beside the extractor.
        cv2.setNumThreads(1)
        self.cfg = cfg
        self.timing = timing
        self.kind = cfg.resolved_kind()
        self.sink = sink
        self.stop_event = stop
        self.convert = convert
        self.clock = clock
        self.stats = SourceStats()
        self._fid = 0
        self._handed = 0  # frames with fid <= this were handed over
        # Motion stream: every frame is kept as a small grey image, the predecessor of the next.
        self.motion_grey = motion_grey
        self._prev_grey: np.ndarray | None = None

    # -- state, reported in status and logs ---------------------------------------------------
    def _state(self, state: str, error: str | None = None) -> None:
        if error is not None:
            self.stats.last_error = error  # stays after recovery: it tells what the last reconnect was for
        if state != self.stats.state:
            how = f": {error}" if error else ""
            (log.warning if state in ("reconnecting", "failed") else log.info)("source %s: %s -> %s%s", self.cfg.id, self.stats.state, state, how)
            self.stats.state = state

    def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min, self.cfg.reconnect_max)
        while not self.stop_event.is_set():
            try:
                opened = open_capture(self.cfg)
            except (SourceError, cv2.error) as exc:
                self._retry(backoff, str(exc).strip().splitlines()[-1] if str(exc).strip() else "cannot open")
                continue
            try:
                log.info("source %s: opened %s %s (%dx%d, %.3g fps, %s)", self.cfg.id, self.kind, self.cfg.uri,
                         opened.width, opened.height, opened.fps, opened.backend)
                outcome = self._read_file(opened) if self.kind == "file" else self._read_live(opened)
            except SourceError as exc:
                self._state("failed", str(exc))
                return
            finally:
                opened.cap.release()
            if self.stop_event.is_set():
                return
            if outcome.frames:
                backoff.reset()
            if self.kind == "file" and outcome.ended and outcome.frames:
                if not self.cfg.loop:
                    log.info("source %s: end of file after %d frames", self.cfg.id, outcome.frames)
                    self._state("ended")
                    return
                self.stats.loop += 1
                log.info("source %s: end of file after %d frames, looping (pass %d)", self.cfg.id, outcome.frames, self.stats.loop + 1)
                continue
            self._retry(backoff, outcome.error or ("no frames in file" if self.kind == "file" else "stream ended"))

    def _retry(self, backoff: Backoff, error: str) -> None:
        self._state("reconnecting", error)
        self.stats.reconnects += 1
        delay = backoff.next()
        log.info("source %s: reconnect %d in %.1f s", self.cfg.id, self.stats.reconnects, delay)
        self.stop_event.wait(delay)

    # -- reading ------------------------------------------------------------------------------
    def _keep(self, cap: cv2.VideoCapture, t: float, mono: float, wall: float, media: float | None, wanted: bool = True) -> Captured | None:
        """Retrieve the grabbed frame if it fills a slot (``wanted``) or the motion stream needs it as
        the next frame's predecessor; a Captured only for a wanted frame."""
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            self._prev_grey = None
            return None
        grey = self.motion_grey(frame) if self.motion_grey is not None else None
        prev, self._prev_grey = self._prev_grey, grey
        if not wanted:
            return None
        self._fid += 1
        loop = self.stats.loop if self.kind == "file" else None
        return Captured(self._fid, t, mono, wall, media, loop, image=self.convert(frame),
                        motion_pair=(prev, grey) if grey is not None else None)

    def _hand_over(self, fills: list[Fill[Captured]], paused: bool) -> None:
        if not fills:
            return
        new = []
        for f in fills:
            if f.frame is not None and f.frame.fid > self._handed:
                self._handed = f.frame.fid
                new.append(f.frame)
        self.stats.sampled += len(new)
        self.sink.fills(self.cfg.id, fills, new, paused)

    def _offer(self, cap: cv2.VideoCapture, filler: SlotFiller[Captured], t: float, mono: float, wall: float,
               media: float | None) -> tuple[list[Fill[Captured]], bool]:
        """One grabbed frame at ``t``: converted only if it can fill a slot (and the source is not
        paused); returns the slots it settles and whether the source is paused."""
        paused = self.sink.paused(self.cfg.id)
        wanted = not paused and filler.wants(t)
        frame = None
        if wanted or (self.motion_grey is not None and not paused):
            frame = self._keep(cap, t, mono, wall, media, wanted)
        else:
            self._prev_grey = None  # a frame not looked at: the next one has no known predecessor
        return filler.push(t, frame), paused

    def _read_file(self, opened: Opened) -> _Outcome:
        fps = opened.fps
        if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise SourceError(f"{self.cfg.uri}: header frame rate {fps:g} fps is outside {FPS_RANGE[0]:g}-{FPS_RANGE[1]:g} fps; "
                              "re-mux the file with a real frame rate")
        cap, frame_s = opened.cap, 1.0 / fps
        clock = FileClock(fps)
        filler: SlotFiller[Captured] = SlotFiller(self.timing.dt, 0.0, frame_s)
        self._prev_grey = None
        self.sink.segment(self.cfg.id)
        self._state("running")
        start = self.clock()
        n, position = 0, 0.0
        dt = self.timing.dt
        held: list[tuple[Fill[Captured], bool]] = []  # settled slots not yet known to lie inside the file

        def release(end: float) -> None:
            # A slot is handed over once the file is known to reach the end of its interval, so a
            # window is published only if it fits in the file (as `window_starts` counts them).
            while held and (held[0][0].k + 1) * dt <= end + 1e-9:
                paused = held[0][1]
                run = []
                while held and held[0][1] == paused and (held[0][0].k + 1) * dt <= end + 1e-9:
                    run.append(held.pop(0)[0])
                self._hand_over(run, paused)

        while not self.stop_event.is_set():
            if not cap.grab():
                if n:  # end of file: the slots inside the last frame's display interval
                    end = position + frame_s
                    held.extend((f, False) for f in filler.push(end - 0.5 * dt + 1e-9, None))
                    release(end)
                return _Outcome(n, ended=True)
            n += 1
            self.stats.frames_in += 1
            position = clock.position(cap.get(cv2.CAP_PROP_POS_MSEC))
            if self.cfg.realtime:
                ahead = start + position - self.clock()
                if ahead > 0 and self.stop_event.wait(ahead):
                    break
            # The frame's time is the centre of its display interval.
            fills, paused = self._offer(cap, filler, position + 0.5 * frame_s, self.clock(), time.time(), position)
            held.extend((f, paused) for f in fills)
            release(position + frame_s)
        return _Outcome(n)

    def _read_live(self, opened: Opened) -> _Outcome:
        cap = opened.cap
        clock = StreamClock()
        filler: SlotFiller[Captured] | None = None
        nominal = 1.0 / opened.fps if FPS_RANGE[0] <= opened.fps <= FPS_RANGE[1] else self.timing.dt
        self._prev_grey = None
        self.sink.segment(self.cfg.id)
        self._state("running")
        n, live = 0, Liveness(self.cfg.stall_timeout, self.clock())
        while not self.stop_event.is_set():
            if not cap.grab():
                if isinstance(cap, PipeCapture) and cap.ended:  # the command exited: restart it
                    return _Outcome(n, ended=True, error=cap.ended)
                if not live.alive(self.clock()):  # stalled
                    said = cap.stderr.text() if isinstance(cap, PipeCapture) else ""  # e.g. a camera timeout
                    return _Outcome(n, error=f"no frame for {self.cfg.stall_timeout:g} s (stalled){': ' + said if said else ''}")
                self.stop_event.wait(0.01)
                continue
            mono, wall = self.clock(), time.time()
            live.beat(mono)
            n += 1
            self.stats.frames_in += 1
            t = clock.time(mono, cap.get(cv2.CAP_PROP_POS_MSEC))
            if filler is None:  # slot 0 falls on the first frame
                filler = SlotFiller(self.timing.dt, t - 0.5 * self.timing.dt, nominal)
            self._hand_over(*self._offer(cap, filler, t, mono, wall, None))
        return _Outcome(n)
