"""A complete window -> the head -> the prediction message a subscriber reads."""

from __future__ import annotations

import numpy as np

from ..config import SourceConfig
from ..messages import UNKNOWN, ModelIds, Prediction, PredictionLatency
from ..pipeline import top_k
from ..windows import Ready


def prediction(
    sid: str,
    seq: int,
    w: Ready,
    probs: np.ndarray,
    labels: list[str],
    cfg: SourceConfig,
    models: ModelIds,
    head_ms: float,
) -> Prediction:
    """The message for window ``w``: its label (``unknown`` below the source's ``min_score``), top
    k, the frames' times and the latency parts known before it is published."""
    first, last = w.frames[0], w.frames[-1]
    best = int(np.argmax(probs))
    known = float(probs[best]) >= cfg.min_score
    return Prediction(
        source=sid,
        seq=seq,
        label=labels[best] if known else UNKNOWN,
        score=round(float(probs[best]), 6),
        window_start=first.wall,
        window_end=last.wall,
        media_start=first.media,
        media_end=last.media,
        loop=last.loop,
        top=top_k(probs, labels, cfg.top_k),
        models=models,
        frames=len({f.fid for f in w.frames}),
        gaps=w.gaps,
        new_frames=w.new_frames,
        latency=PredictionLatency(
            extract_ms=round(w.extract_ms, 3),
            head_ms=round(head_ms, 3),
            floor_ms=round(w.pending_ms + head_ms, 3),
            capture_to_publish_ms=0.0,
        ),
    )
