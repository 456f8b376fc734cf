"""Machine-readable outputs: one JSON object per classified clip (``classify --json``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    score: float


class StageTimings(BaseModel):
    """Milliseconds spent per stage, so users know where the time goes."""

    model_config = ConfigDict(extra="forbid")
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    extract_ms: float = 0.0
    head_ms: float = 0.0
    total_ms: float = 0.0


class ClipResult(BaseModel):
    """The outcome for one clip: ``top`` on success, ``error`` (one line) on failure."""

    model_config = ConfigDict(extra="forbid")
    path: str
    ok: bool
    top: list[Score] = []
    frames: int | None = None
    fps: float | None = None
    timings: StageTimings | None = None
    error: str | None = None
