"""Per-clip feature cache for training, computed with the device's own feature path.

Each clip is decoded once; the cache keeps the features of up to ``cap`` frames spread over the
clip (every frame of a short clip), always including the exact M-frame deployment sample, plus
augmentation views of the same frames: mirrored, and optionally ``crops`` random crops (one box per
clip and view, so the crop is steady over time, mirrored at random). Training draws jittered samples from them;
evaluation uses the deployment sample, so the numbers we report are the numbers the device gets.

Each entry also records the clip's frame rate, so windows of a fixed duration (the daemon's
``window_indices``) are sampled from it exactly; entries written before that read the rate from
the clip's header when loaded.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid.capture import frame_times, header_fps
from edgevid.errors import EdgevidError
from edgevid.extractor import Extractor
from edgevid.motion import MotionEstimator, MotionSpec
from edgevid.pipeline import clip_features
from edgevid.sampling import clip_duration, sample_indices
from edgevid.sources.pipe import die_with_parent
from edgevid.store import write_atomic

CACHE_VERSION = 1
MOTION_CACHE_VERSION = 1


@dataclass
class CachedClip:
    indices: np.ndarray  # sorted unique frame indices
    feats: np.ndarray  # uint8 [K, D]
    views: np.ndarray  # uint8 [V, K, D]: mirrored frames, then crops
    n_frames: int
    fps: float = 0.0  # the clip's frame rate (0: unknown)
    times: np.ndarray | None = None  # when each decoded frame starts being shown (s), by the file's own timestamps

    @property
    def duration(self) -> float:
        """Seconds the clip plays by its own timestamps (what a file source sees), else n / fps."""
        return clip_duration(self.n_frames, self.fps, self.times)

    @property
    def flipped(self) -> np.ndarray:
        return self.views[0]

    def deploy_sample(self, m: int) -> np.ndarray:
        """uint8 [m, D]: exactly the frames ``edgevid classify`` samples."""
        return self.feats[np.searchsorted(self.indices, sample_indices(self.n_frames, m))]

    @property
    def complete(self) -> bool:
        """Every frame of the clip is cached (clips up to the cache's cap): any sample is exact."""
        return len(self.indices) == self.n_frames

    def take(self, frames: np.ndarray, view: int | None = None) -> np.ndarray:
        """uint8 [len(frames), D]: the features of these frame indices (exact when cached, else the
        nearest cached frame), from the original frames or an augmentation view (0 = mirrored)."""
        frames = np.asarray(frames)
        pos = np.clip(np.searchsorted(self.indices, frames), 0, len(self.indices) - 1)
        left = np.clip(pos - 1, 0, len(self.indices) - 1)
        pos = np.where(np.abs(self.indices[left] - frames) < np.abs(self.indices[pos] - frames), left, pos)
        return (self.feats if view is None else self.views[view])[pos]


def with_motion(clip: CachedClip, motion: "CachedMotion", quant) -> CachedClip:
    """The clip as a head reading both streams sees it: float32 ``[K, D + DIM]`` per frame, the
    dequantized features then the motion descriptor (the mirrored view with the mirrored frames'
    motion); ``quant`` passes such float rows through."""
    if not np.array_equal(clip.indices, motion.indices):
        raise ValueError("motion and appearance caches hold different frames (stale entry?)")
    feats = np.concatenate([quant(clip.feats), motion.motion], axis=1)
    views = (
        np.stack([np.concatenate([quant(clip.views[0]), motion.views[0]], axis=1)])
        if len(clip.views)
        else np.zeros((0, *feats.shape), np.float32)
    )  # clips loaded without views (test)
    return CachedClip(clip.indices, feats, views, clip.n_frames, clip.fps, clip.times)


@dataclass
class CachedMotion:
    indices: np.ndarray  # the same frames as the appearance cache
    motion: np.ndarray  # float32 [K, DIM]
    views: np.ndarray  # float32 [1, K, DIM]: the mirrored frames' motion


def motion_cache_dir(cache_root: Path, spec: MotionSpec) -> Path:
    """Motion descriptors live beside the appearance features, one folder per flow method and size."""
    return Path(cache_root) / "motion" / spec.id


def load_motion(path: Path, clip: Path) -> CachedMotion | None:
    """The cached motion stream, or None if absent, unreadable or stale."""
    try:
        with np.load(path) as z:
            if int(z["version"]) != MOTION_CACHE_VERSION or not np.array_equal(z["stamp"], _stamp(clip)):
                return None
            return CachedMotion(z["indices"], z["motion"], z["views"])
    except (OSError, KeyError, ValueError, EOFError):
        return None


def _compute_motion(clip: Path, out: Path, m: int, cap: int, spec_json: str) -> tuple[str, str | None]:
    spec = MotionSpec.model_validate_json(spec_json)
    try:
        times = frame_times(clip)
        cf = clip_features(
            None,
            clip,
            None,
            indices_for=lambda n: cache_indices(n, m, cap),
            views=[mirror],
            times=times,
            motion=MotionEstimator(spec),
        )
    except EdgevidError as exc:
        return str(clip), str(exc)
    buf = io.BytesIO()
    np.savez(
        buf,
        version=MOTION_CACHE_VERSION,
        stamp=_stamp(clip),
        indices=cf.indices,
        motion=cf.motion,
        views=np.stack(cf.motion_views),
    )
    _write_entry(out, buf)
    return str(clip), None


def extract_motion(
    clips: list[Path],
    root: Path,
    cache_dir: Path,
    spec: MotionSpec,
    *,
    m: int = 25,
    cap: int = 64,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Fill the motion cache (``cache_dir`` = :func:`motion_cache_dir`) with the same frames as the
    appearance cache, through ``edgevid.pipeline.clip_features``; a rerun resumes. Returns failures."""
    todo = [c for c in clips if load_motion(cache_path(cache_dir, root, c), c) is None]
    if not todo:
        return {}
    return _pool_run(
        todo,
        f"motion {spec.id}",
        progress,
        workers or os.cpu_count() or 1,
        {"initializer": _init_motion_worker, "initargs": (os.getpid(),)},
        lambda pool, c: pool.submit(_compute_motion, c, cache_path(cache_dir, root, c), m, cap, spec.model_dump_json()),
    )


def _pool_run(todo: list[Path], desc: str, progress: bool, workers: int, pool_kw: dict, submit) -> dict[str, str]:
    """Run ``submit(pool, clip)`` for every clip in spawned worker processes; return failures
    (each said as it happens); stop early when most clips fail."""
    import multiprocessing

    failures: dict[str, str] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=desc, unit="clip")
    say = bar.write if bar else (lambda line: print(line, file=sys.stderr, flush=True))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), **pool_kw)
    try:
        for done, future in enumerate(as_completed([submit(pool, c) for c in todo]), 1):
            clip, error = future.result()
            if error:
                failures[clip] = error
                say(f"failed clip: {error}")  # as it happens, not after the whole pass
            if bar:
                bar.update()
            if most_failed(len(failures), done):
                raise ExtractionError(
                    f"stopped: {len(failures)} of the first {done} clips failed (last: {error}); "
                    "check the clips and the machine's load, then rerun to resume"
                )
    except (
        BaseException
    ):  # Ctrl-C, SIGTERM, a full cache disk, most clips failing: stop now, not after the queued clips
        _stop(pool)
        raise
    finally:
        if bar:
            bar.close()
    pool.shutdown()
    return failures


def cache_indices(n_frames: int, m: int, cap: int) -> np.ndarray:
    """Frames kept in the cache: ``cap`` spread uniformly (all when shorter) plus the deploy sample."""
    spread = sample_indices(n_frames, min(n_frames, cap))
    return np.union1d(spread, sample_indices(n_frames, m))


def cache_path(cache_dir: Path, root: Path, clip: Path) -> Path:
    return Path(cache_dir) / (clip.relative_to(root).as_posix() + ".npz")


def _stamp(clip: Path) -> np.ndarray:
    st = clip.stat()
    return np.array([st.st_size, st.st_mtime_ns], np.int64)


def load_cached(path: Path, clip: Path, crops: int = 0) -> CachedClip | None:
    """The cached features, or None if absent, unreadable, stale (clip changed since) or short of views
    (``crops``: the mirrored view and this many crops; -1: no views, the original frames only)."""
    try:
        with np.load(path) as z:
            if int(z["version"]) != CACHE_VERSION or not np.array_equal(z["stamp"], _stamp(clip)):
                return None
            views = z["views"] if "views" in z.files else z["flipped"][None]
            if len(views) < 1 + crops:  # crops < 0: the original frames are all that is needed
                return None
            # Entries written before fps was cached read it from the clip's header (cheap: no decoding).
            fps = float(z["fps"]) if "fps" in z.files else header_fps(clip)
            n = int(z["n_frames"])
            # Frame times: cached, or read from the clip's packets (no decoding: milliseconds).
            times = z["times"] if "times" in z.files else frame_times(clip)
            if times is None or len(times) != n:
                times = None
            return CachedClip(z["indices"], z["feats"], views[: 1 + crops], n, fps, times)
    except (OSError, KeyError, ValueError, EOFError):
        return None


def mirror(frame: np.ndarray) -> np.ndarray:
    return frame[:, ::-1]


def _crop_boxes(clip: Path, root: Path, n: int) -> list[tuple]:
    rng = np.random.default_rng(zlib.crc32(clip.relative_to(root).as_posix().encode()))
    return [
        (
            rng.uniform(0.4, 0.9),
            np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))),
            rng.random(),
            rng.random(),
            rng.random() < 0.5,
        )
        for _ in range(n)
    ]


def view_flips(clip: Path, root: Path, crops: int) -> list[bool]:
    """Which of a clip's cached views are mirror images: the mirrored view, then each crop
    (mirrored at random, seeded by the clip's path as :func:`crop_views` draws them)."""
    return [True] + [bool(b[-1]) for b in _crop_boxes(clip, root, crops)]


def crop_views(clip: Path, root: Path, n: int):
    """``n`` seeded random crops for a clip (area 40-90 %, aspect 3:4 to 4:3, mirrored at random)."""
    boxes = _crop_boxes(clip, root, n)

    def make(area, aspect, fx, fy, flip):
        def view(frame: np.ndarray) -> np.ndarray:
            h, w = frame.shape[:2]
            cw = int(min(w, round(w * np.sqrt(area * aspect))))
            ch = int(min(h, round(h * np.sqrt(area / aspect))))
            x, y = int(fx * (w - cw)), int(fy * (h - ch))
            out = frame[y : y + ch, x : x + cw]
            return out[:, ::-1] if flip else out

        return view

    return [make(*b) for b in boxes]


_worker: dict = {}


class CacheWriteError(Exception):
    """The feature cache cannot be written (full disk, read-only): every later clip would fail too."""


def _init_motion_worker(parent: int) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_worker(extractor_path: str, threads: int, parent: int) -> None:
    die_with_parent(parent)  # a killed experiment left its workers computing for minutes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the workers
    _worker["extractor"] = Extractor(Path(extractor_path), num_threads=threads)


def _compute(clip: Path, root: Path, out: Path, m: int, cap: int, crops: int) -> tuple[str, str | None]:
    # crops < 0: no augmentation views at all (test clips: evaluation reads the original frames only).
    views = [] if crops < 0 else [mirror] + crop_views(clip, root, crops)
    try:
        times = frame_times(clip)  # read once: the frame count for decoding, and cached for windows
        cf = clip_features(
            _worker["extractor"], clip, None, indices_for=lambda n: cache_indices(n, m, cap), views=views, times=times
        )
    except EdgevidError as exc:
        return str(clip), str(exc)
    buf = io.BytesIO()
    extra = {"times": times} if times is not None and len(times) == cf.n_frames else {}
    np.savez(
        buf,
        version=CACHE_VERSION,
        stamp=_stamp(clip),
        indices=cf.indices,
        feats=cf.feats,
        views=np.stack(cf.views) if cf.views else np.zeros((0, *cf.feats.shape), np.uint8),
        n_frames=cf.n_frames,
        fps=cf.fps,
        **extra,
    )
    _write_entry(out, buf)
    return str(clip), None


def _write_entry(out: Path, buf: io.BytesIO) -> None:
    try:
        write_atomic(out, buf.getvalue())  # an interrupted run never leaves a half-written entry
    except OSError as exc:
        raise CacheWriteError(
            f"{out.parent}: cannot write the feature cache: {(exc.strerror or str(exc)).lower()}; "
            "free space and run again (finished clips are kept: the run resumes)"
        ) from None


def extract_dataset(
    clips: list[Path],
    root: Path,
    cache_dir: Path,
    extractor_path: Path,
    *,
    m: int = 25,
    cap: int = 64,
    crops: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Fill the cache for ``clips`` (skipping fresh entries: a rerun resumes); return failures."""
    todo = [c for c in clips if load_cached(cache_path(cache_dir, root, c), c, crops) is None]
    if not todo:
        return {}
    workers = workers or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // workers)
    return _pool_run(
        todo,
        "features",
        progress,
        workers,
        {"initializer": _init_worker, "initargs": (str(extractor_path), threads, os.getpid())},
        lambda pool, c: pool.submit(_compute, c, root, cache_path(cache_dir, root, c), m, cap, crops),
    )


class ExtractionError(EdgevidError):
    """Most clips fail: something is wrong beyond single bad files (codec, memory, a load spike)."""


def most_failed(failed: int, done: int, at_least: int = 8) -> bool:
    """More than half of the clips tried so far failed, once enough were tried to tell."""
    return done >= at_least and failed * 2 > done


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued clips and end the workers; entries already written stay valid (atomic)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in list((pool._processes or {}).values()):  # no public API ends running workers
        proc.terminate()
    for proc in list((pool._processes or {}).values()):
        proc.join(5)
