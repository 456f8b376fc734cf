"""A decided window -> the prediction message a subscriber reads: the head's answer for a complete
window, ``idle`` for one the motion gate found still."""

from __future__ import annotations

import numpy as np

from ..config import SourceConfig
from ..messages import IDLE, UNKNOWN, ModelIds, Prediction, PredictionLatency
from ..pipeline import top_k
from ..windows import Ready, Skipped


def prediction(
    sid: str,
    seq: int,
    w: Ready | Skipped,
    probs: np.ndarray | None,
    labels: list[str],
    cfg: SourceConfig,
    models: ModelIds,
    head_ms: float,
) -> Prediction:
    """The message for window ``w``: its label (``unknown`` below the source's ``min_score``;
    ``idle`` with no scores when ``probs`` is None: a still window nothing ran on), top k, the
    frames' times and the latency parts known before it is published."""
    first, last = w.frames[0], w.frames[-1]
    label, score, top = IDLE, 0.0, []
    extract_ms = pending_ms = 0.0
    new_frames = 0
    if probs is not None and isinstance(w, Ready):
        best = int(np.argmax(probs))
        score = round(float(probs[best]), 6)
        label = labels[best] if float(probs[best]) >= cfg.min_score else UNKNOWN
        top = top_k(probs, labels, cfg.top_k)
        extract_ms, pending_ms, new_frames = w.extract_ms, w.pending_ms, w.new_frames
    return Prediction(
        source=sid,
        seq=seq,
        label=label,
        score=score,
        window_start=first.wall,
        window_end=last.wall,
        media_start=first.media,
        media_end=last.media,
        loop=last.loop,
        top=top,
        models=models,
        frames=len({f.fid for f in w.frames}),
        gaps=w.gaps,
        new_frames=new_frames,
        latency=PredictionLatency(
            extract_ms=round(extract_ms, 3),
            head_ms=round(head_ms, 3),
            floor_ms=round(pending_ms + head_ms, 3),
            capture_to_publish_ms=0.0,
        ),
    )
