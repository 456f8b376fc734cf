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
    motion_ms: float = 0.0  # the motion stream (heads that read it)
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
    #: With the motion gate (``classify`` without ``--no-gate``): the windows, how many it found
    #: still (left out of ``top``), and ``idle``: all of them (``top`` empty: nothing moved).
    windows: int | None = None
    gated_windows: int | None = None
    idle: bool | None = None
    error: str | None = None


# 2: window contract (frames, gaps, loop), overload and skip reasons in status; 3: label (unknown below min_score),
# MQTT drops in status; 4: latency.floor_ms, every output in status (zmq's dropped unknown: null); 5: the
# motion gate: label "idle", the sources' motion, gated frames, idle seconds and idle windows in status
SCHEMA_VERSION = 5
EVENT_SCHEMA_VERSION = 1
UNKNOWN = "unknown"
#: The label of a window the motion gate found still: nothing ran on it (score 0, top empty).
IDLE = "idle"


class ModelIds(BaseModel):
    """sha256 prefixes of the models that produced a prediction."""

    model_config = ConfigDict(extra="forbid")
    extractor: str
    head: str


class PredictionLatency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extract_ms: float  # extractor time for the frames new in this window
    head_ms: float
    #: The least capture_to_publish_ms could be: the extractor and motion time of the frames this
    #: window still needed when its newest frame was captured, plus head_ms (the rest is waiting).
    floor_ms: float
    capture_to_publish_ms: float  # newest frame's capture -> message sent (monotonic clock)


class Prediction(BaseModel):
    """Published on topic ``pred/<source>`` after every hop: what the last window showed.

    A window is M slots ``window / M`` seconds apart, each holding the captured frame nearest its
    instant; ``frames`` of them are distinct, and ``gaps`` slots had no frame within one sampling
    interval (a window with more than 20 % gaps is skipped, not published). While the source's
    motion gate finds the picture still, windows are still published at the hop's rate, with
    ``label = "idle"``, ``score`` 0 and ``top`` empty: a subscriber that hears nothing for a few
    hops knows the source or the daemon is down, never that the room is empty.
    """

    model_config = ConfigDict(extra="forbid")
    type: Literal["prediction"] = "prediction"
    schema_version: Literal[5] = SCHEMA_VERSION
    source: str
    seq: int
    label: str  # top-1, "unknown" when its (calibrated) score is below the source's min_score, "idle": still
    score: float  # top-1's score (whatever the label says; 0 when idle)
    window_start: float  # capture time (unix s, a label: the device clock may step) of the first slot's frame
    window_end: float  # capture time of the last slot's frame
    media_start: float | None = None  # file sources: position in the file (s) of the first slot's frame
    media_end: float | None = None
    loop: int | None = None  # file sources: pass over the file (0 = first); windows never span two passes
    top: list[Score]
    models: ModelIds
    frames: int  # distinct frames in the window's M slots
    gaps: int  # slots with no frame within one sampling interval
    new_frames: int  # frames that went through the extractor for this window (the rest were cached)
    latency: PredictionLatency


class SourceStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    state: Literal["starting", "running", "paused", "reconnecting", "ended", "failed"]
    window_s: float  # the window and hop in use (hop rounded to whole sampling intervals)
    hop_s: float
    fps_in: float
    fps_processed: float
    frames_in: int
    sampled: int  # distinct frames that filled a slot
    extracted: int
    dropped: int  # sampled frames never extracted (the worker fell behind)
    reconnects: int
    predictions: int
    skipped_windows: int
    skipped: dict[str, int] = {}  # skipped windows by reason: gaps, overload
    #: The motion gate (None: off for this source): whether the picture is moving now, the windows
    #: published as idle, the sampled frames it kept from the extractor, seconds the source was still.
    motion: bool | None = None
    idle_windows: int = 0
    gated_frames: int = 0
    idle_s: float = 0.0
    loop: int | None = None  # file sources: passes completed
    last_error: str | None = None


class Status(BaseModel):
    """Published on topic ``status`` every ``status_interval``: the daemon's heartbeat."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["status"] = "status"
    schema_version: Literal[5] = SCHEMA_VERSION
    seq: int
    uptime_s: float
    overloaded: bool = False  # live sources need more extractor time than there is: served in turns
    overload: str | None = None  # why, in numbers
    extract_ms_per_frame: float | None = None  # the extractor's measured cost here
    sources: list[SourceStatus]
    outputs: dict[str, "OutputStatus"] = {}  # optional outputs (mqtt): connected, sent, dropped


class OutputStatus(BaseModel):
    """An output's health: it never blocks the daemon, so what it could not send is counted."""

    model_config = ConfigDict(extra="forbid")
    connected: bool  # False also while a connected broker stopped taking messages (see last_error)
    sent: int  # mqtt: messages the broker took (QoS 0: written to it, QoS 1: acknowledged); zmq: handed to the socket
    # Messages dropped: queue full while the broker was slow or away, or lost with a connection.
    # None where the output cannot know: a ZeroMQ PUB socket drops for one slow subscriber at its
    # send_hwm without telling the sender (subscribers see the gap in ``seq``).
    dropped: int | None
    queued: int  # messages held: waiting in edgevid's queue or handed over and not yet taken
    reconnects: int
    last_error: str | None = None


class Event(BaseModel):
    """Published on topic ``event/<source>``: an action that started, goes on, or ended.

    ``id`` pairs a ``start`` with its updates and its ``end``; ``window_*`` are the times of the
    prediction that caused this message, ``started_at`` the start of the first window that showed
    the action; ``duration_s`` runs from the first to the last window where it was present (on the
    source's own time: media time for files)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["event"] = "event"
    schema_version: Literal[1] = EVENT_SCHEMA_VERSION
    source: str
    seq: int  # event messages of this source, from 1
    id: str
    phase: Literal["start", "update", "end"]
    label: str
    score: float | None  # the label's score in this window (None: ended because the stream of windows broke)
    best_score: float
    started_at: float  # capture time (unix s) of the first window's first frame
    started_media: float | None = None  # files: its position in the file (s)
    duration_s: float
    window_start: float
    window_end: float
    media_start: float | None = None
    media_end: float | None = None
    prediction_seq: int  # the prediction (pred/<source> seq) that caused it


Status.model_rebuild()


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every published message, as committed under ``schemas/``."""
    return {
        "prediction.schema.json": Prediction.model_json_schema(),
        "status.schema.json": Status.model_json_schema(),
        "event.schema.json": Event.model_json_schema(),
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
