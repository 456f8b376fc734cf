"""Machine-readable outputs: one JSON object per classified clip (``classify --json``)."""

from __future__ import annotations

from typing import Literal

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


SCHEMA_VERSION = 1


class ModelIds(BaseModel):
    """sha256 prefixes of the models that produced a prediction."""

    model_config = ConfigDict(extra="forbid")
    extractor: str
    head: str


class PredictionLatency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extract_ms: float  # extractor time for the frames new in this window
    head_ms: float
    capture_to_publish_ms: float  # newest frame's capture -> message sent


class Prediction(BaseModel):
    """Published on topic ``pred/<source>`` after every hop: what the last window showed."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["prediction"] = "prediction"
    schema_version: Literal[1] = SCHEMA_VERSION
    source: str
    seq: int
    window_start: float  # capture time (unix s) of the window's first sampled frame
    window_end: float  # capture time of its last sampled frame
    media_start: float | None = None  # file sources: position in the file (s)
    media_end: float | None = None
    top: list[Score]
    models: ModelIds
    new_frames: int  # frames that went through the extractor for this window (the rest were cached)
    latency: PredictionLatency


class SourceStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    state: Literal["starting", "running", "reconnecting", "ended", "failed"]
    fps_in: float
    fps_processed: float
    frames_in: int
    sampled: int
    dropped: int
    reconnects: int
    predictions: int
    skipped_windows: int
    last_error: str | None = None


class Status(BaseModel):
    """Published on topic ``status`` every ``status_interval``: the daemon's heartbeat."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["status"] = "status"
    schema_version: Literal[1] = SCHEMA_VERSION
    seq: int
    uptime_s: float
    sources: list[SourceStatus]


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every published message, as committed under ``schemas/``."""
    return {
        "prediction.schema.json": Prediction.model_json_schema(),
        "status.schema.json": Status.model_json_schema(),
        "clip_result.schema.json": ClipResult.model_json_schema(),
    }


if __name__ == "__main__":  # python -m edgevid.messages schemas/  (regenerates the committed files)
    import json
    import sys
    from pathlib import Path

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")
    out.mkdir(exist_ok=True)
    for name, schema in json_schemas().items():
        (out / name).write_text(json.dumps(schema, indent=2) + "\n")
