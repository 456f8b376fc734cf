"""Per-clip feature cache for training, computed with the device's own feature path.

Each clip is decoded once; the cache keeps the features of up to ``cap`` frames spread over the
clip (every frame of a short clip) plus their mirror images, always including the exact M-frame
deployment sample. Training draws jittered samples from them; evaluation uses the deployment
sample, so the numbers we report are the numbers the device gets.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.extractor import Extractor
from edgevid.pipeline import clip_features
from edgevid.sampling import sample_indices
from edgevid.store import write_atomic

CACHE_VERSION = 1


@dataclass
class CachedClip:
    indices: np.ndarray  # sorted unique frame indices
    feats: np.ndarray  # uint8 [K, D]
    flipped: np.ndarray  # uint8 [K, D], mirrored frames
    n_frames: int

    def deploy_sample(self, m: int) -> np.ndarray:
        """uint8 [m, D]: exactly the frames ``edgevid classify`` samples."""
        return self.feats[np.searchsorted(self.indices, sample_indices(self.n_frames, m))]


def cache_indices(n_frames: int, m: int, cap: int) -> np.ndarray:
    """Frames kept in the cache: ``cap`` spread uniformly (all when shorter) plus the deploy sample."""
    spread = sample_indices(n_frames, min(n_frames, cap))
    return np.union1d(spread, sample_indices(n_frames, m))


def cache_path(cache_dir: Path, root: Path, clip: Path) -> Path:
    return Path(cache_dir) / (clip.relative_to(root).as_posix() + ".npz")


def _stamp(clip: Path) -> np.ndarray:
    st = clip.stat()
    return np.array([st.st_size, st.st_mtime_ns], np.int64)


def load_cached(path: Path, clip: Path) -> CachedClip | None:
    """The cached features, or None if absent, unreadable or stale (clip changed since)."""
    try:
        with np.load(path) as z:
            if int(z["version"]) != CACHE_VERSION or not np.array_equal(z["stamp"], _stamp(clip)):
                return None
            return CachedClip(z["indices"], z["feats"], z["flipped"], int(z["n_frames"]))
    except (OSError, KeyError, ValueError, EOFError):
        return None


_worker: dict = {}


def _init_worker(extractor_path: str, threads: int) -> None:
    _worker["extractor"] = Extractor(Path(extractor_path), num_threads=threads)


def _compute(clip: Path, out: Path, m: int, cap: int) -> tuple[str, str | None]:
    try:
        cf = clip_features(_worker["extractor"], clip, None, indices_for=lambda n: cache_indices(n, m, cap), also_flipped=True)
    except EdgevidError as exc:
        return str(clip), str(exc)
    buf = io.BytesIO()
    np.savez(buf, version=CACHE_VERSION, stamp=_stamp(clip), indices=cf.indices, feats=cf.feats, flipped=cf.flipped, n_frames=cf.n_frames)
    write_atomic(out, buf.getvalue())  # an interrupted run never leaves a half-written entry
    return str(clip), None


def extract_dataset(
    clips: list[Path],
    root: Path,
    cache_dir: Path,
    extractor_path: Path,
    *,
    m: int = 25,
    cap: int = 64,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Fill the cache for ``clips`` (skipping fresh entries: a rerun resumes); return failures."""
    todo = [c for c in clips if load_cached(cache_path(cache_dir, root, c), c) is None]
    failures: dict[str, str] = {}
    if not todo:
        return failures
    workers = workers or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // workers)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="features", unit="clip")
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(str(extractor_path), threads)) as pool:
        futures = [pool.submit(_compute, c, cache_path(cache_dir, root, c), m, cap) for c in todo]
        for future in as_completed(futures):
            clip, error = future.result()
            if error:
                failures[clip] = error
            if bar:
                bar.update()
    if bar:
        bar.close()
    return failures
