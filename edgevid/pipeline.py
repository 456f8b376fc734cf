"""One clip through source -> sampler -> extractor -> head, timed per stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .capture import read_clip
from .errors import EdgevidError
from .extractor import Extractor
from .head import Head
from .messages import ClipResult, Score, StageTimings


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[Score]:
    """The k best labels, best first."""
    order = np.argsort(-probs, kind="stable")[: max(1, k)]
    return [Score(label=labels[i], score=round(float(probs[i]), 6)) for i in order]


class ClipClassifier:
    """An extractor and a head that were checked to fit together."""

    def __init__(self, extractor: Extractor, head: Head) -> None:
        head.check_extractor(extractor.feature_dim, extractor.sha256, str(extractor.path))
        self.extractor = extractor
        self.head = head

    def features(self, path: Path | str) -> tuple[np.ndarray, dict, StageTimings]:
        """uint8 features ``[M, D]`` of a clip: the exact computation used for training and serving."""
        return clip_features(self.extractor, path, self.head.frames)

    def classify(self, path: Path | str, k: int = 5) -> ClipResult:
        """Classify one clip; user-facing failures come back as ``ok=False`` with a one-line error."""
        try:
            feats, info, timings = self.features(path)
            t = time.perf_counter()
            probs = self.head.predict(self.extractor.dequantize(feats))
            timings.head_ms = (time.perf_counter() - t) * 1e3
            timings.total_ms += timings.head_ms
        except EdgevidError as exc:
            return ClipResult(path=str(path), ok=False, error=str(exc))
        return ClipResult(path=str(path), ok=True, top=top_k(probs, self.head.labels, k), timings=timings, **info)


def clip_features(extractor: Extractor, path: Path | str, m: int) -> tuple[np.ndarray, dict, StageTimings]:
    """Decode, preprocess and extract ``m`` uniformly sampled frames of a clip."""
    t0 = time.perf_counter()
    clip = read_clip(path, m)
    t1 = time.perf_counter()
    # Repeated indices (clips shorter than m) are preprocessed and extracted once.
    unique, inverse = np.unique(clip.indices, return_inverse=True)
    first = {int(i): frame for i, frame in zip(clip.indices, clip.frames)}
    batch = extractor.preprocess([first[int(i)] for i in unique])
    t2 = time.perf_counter()
    feats = extractor.extract(batch)[inverse]
    t3 = time.perf_counter()
    timings = StageTimings(
        decode_ms=(t1 - t0) * 1e3, preprocess_ms=(t2 - t1) * 1e3, extract_ms=(t3 - t2) * 1e3, total_ms=(t3 - t0) * 1e3
    )
    return feats, {"frames": clip.n_frames, "fps": round(clip.fps, 3)}, timings
