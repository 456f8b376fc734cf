"""Daemon configuration: one TOML file plus ``EDGEVID_*`` environment overrides, strictly checked.

Unknown keys are errors naming their path (``sources.0.windw``), as are wrong types; environment
variables use ``__`` for nesting, e.g. ``EDGEVID_PUBLISH__ENDPOINT=tcp://0.0.0.0:5555``, and a
whole table or list is given as JSON (``EDGEVID_SOURCES='[{"id": "cam", "uri": "0"}]'``). An error
in a value that came from the environment names the variable, not the file.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .pipe import EVEN_HEIGHT, EVEN_WIDTH, PIXEL_FORMATS, split_command


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DAY = 86400.0


class SourceConfig(_Strict):
    """One camera, file, stream or frame-writing command, classified over a sliding window."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64, description="names the topic: pred/<id>")
    uri: str = Field(min_length=1, description="camera index ('0'), device path, video file, rtsp:// / http(s):// URL, "
                                                "or for kind = 'pipe' a command line writing frames to stdout")
    kind: Literal["auto", "camera", "file", "stream", "pipe"] = "auto"
    window: float | None = Field(None, ge=0.1, le=600, description="seconds classified per prediction (default: the head's trained window)")
    hop: float = Field(0.5, gt=0, le=600, description="seconds between predictions, rounded to whole sampling intervals")
    realtime: bool = Field(True, description="files: pace at the file's own timestamps (False: as fast as inference allows)")
    loop: bool = Field(False, description="files: start again at the end")
    top_k: int = Field(3, ge=1, le=1000)
    min_score: float = Field(0.0, ge=0, le=1, description="below this (calibrated) score the top-1 is published as 'unknown'; "
                             "also the score an event's label must reach (0: always name a label)")
    events: "EventsConfig" = Field(default_factory=lambda: EventsConfig(), description="event/<id> start/update/end from the predictions")
    open_timeout: float = Field(10.0, gt=0, le=3600)
    read_timeout: float = Field(5.0, gt=0, le=3600)
    stall_timeout: float = Field(5.0, gt=0, le=3600, description="no frame for this long -> reopen")
    reconnect_min: float = Field(0.5, gt=0, le=3600)
    reconnect_max: float = Field(30.0, gt=0, le=_DAY)
    # kind = "pipe" only: what the command writes (checked below, in this order).
    pixel_format: Literal[PIXEL_FORMATS] | None = Field(None, validate_default=True, description="pipe: frame layout on stdout")
    width: int | None = Field(None, ge=16, le=8192, validate_default=True, description="pipe: frame width (pixels)")
    height: int | None = Field(None, ge=16, le=8192, validate_default=True, description="pipe: frame height (pixels)")
    fps: float | None = Field(None, ge=1, le=240, validate_default=True, description="pipe: the command's frame rate")

    @field_validator("pixel_format", "width", "height", "fps")
    @classmethod
    def _pipe_only(cls, value, info: ValidationInfo):
        """The frame fields are required for a pipe (width and height unless MJPEG) and refused
        elsewhere; 4:2:0 and 4:2:2 layouts need even sizes."""
        name, kind, fmt = info.field_name, info.data.get("kind"), info.data.get("pixel_format")
        if kind != "pipe":
            if value is not None:
                raise PydanticCustomError("pipe_only", 'only for kind = "pipe"')
            return value
        if value is None:
            if name in ("width", "height") and fmt == "mjpeg":
                return value
            raise PydanticCustomError("pipe_field", 'required for kind = "pipe"')
        if (name == "width" and fmt in EVEN_WIDTH or name == "height" and fmt in EVEN_HEIGHT) and value % 2:
            raise PydanticCustomError("pipe_even", "must be even for pixel_format {fmt}", {"fmt": fmt})
        return value

    @model_validator(mode="after")
    def _pipe_command(self) -> "SourceConfig":
        if self.kind == "pipe":
            try:
                split_command(self.uri)
            except ValueError as exc:
                raise PydanticCustomError("pipe_uri", "uri: not a command line ({why})", {"why": str(exc)}) from None
        return self

    def resolved_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        if self.uri.isdigit() or self.uri.startswith("/dev/video"):
            return "camera"
        if "://" in self.uri:
            return "stream"
        return "file"


class EventsConfig(_Strict):
    """Debounce of a source's action events (see edgevid.events)."""

    enabled: bool = True
    min_duration: float = Field(1.0, ge=0, le=3600, description="seconds a label stays top-1 above min_score before it starts")
    end_after: float = Field(1.5, gt=0, le=3600, description="seconds its label is not top-1 with min_score before an event ends")
    update_interval: float = Field(5.0, gt=0, le=3600, description="seconds between update messages while it lasts")


SourceConfig.model_rebuild()


@dataclass(frozen=True)
class SourceTiming:
    """A source's window on the time axis: M slots ``dt`` apart, a prediction every ``hop`` slots."""

    window: float
    m: int
    hop: int
    head_window: float | None

    @property
    def dt(self) -> float:
        return self.window / self.m

    @property
    def hop_s(self) -> float:
        return self.hop * self.dt

    def warning(self, source: str) -> str | None:
        """A window far from the scale the head was trained at is legal, but probably a mistake."""
        if self.head_window and abs(self.window / self.head_window - 1) > 0.25:
            return (f"sources.{source}.window: {self.window:g} s differs from the head's trained window "
                    f"{self.head_window:g} s by more than 25 %; expect lower accuracy")
        return None


def source_timing(cfg: SourceConfig, m: int, head_window: float | None) -> SourceTiming:
    """The source's window (its own, else the head's) and its hop in whole sampling intervals."""
    window = cfg.window if cfg.window is not None else head_window
    if window is None:
        raise ConfigError(f"sources.{cfg.id}.window: the head's manifest records no trained window; set window (seconds)")
    hop = max(1, round(cfg.hop * m / window))
    return SourceTiming(window, m, hop, head_window)


class PublishConfig(_Strict):
    endpoint: str = Field("tcp://127.0.0.1:5555", description="ZeroMQ PUB bind address (loopback by default)")
    send_hwm: int = Field(1000, ge=1, le=1_000_000, description="messages queued per subscriber before dropping")
    status_interval: float = Field(5.0, ge=0.1, le=3600, description="seconds between status messages")
    curve_secret_key: Path | None = Field(None, description="server secret key file (zmq.auth format): enables CURVE")
    curve_authorized_keys: Path | None = Field(None, description="folder of allowed client public keys")

    @model_validator(mode="after")
    def _curve_pair(self) -> "PublishConfig":
        if (self.curve_secret_key is None) != (self.curve_authorized_keys is None):
            raise ValueError("curve_secret_key and curve_authorized_keys go together")
        return self


class MetricsConfig(_Strict):
    """Opt-in Prometheus endpoint (needs the ``metrics`` extra: prometheus_client)."""

    listen: str | None = Field(None, description="host:port to serve /metrics on, e.g. 127.0.0.1:9108 (default: off)")

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            from .metrics import parse_listen

            parse_listen(v)
        return v


class MqttConfig(_Strict):
    """Optional MQTT output beside ZeroMQ (needs the ``mqtt`` extra: paho-mqtt); see edgevid.mqtt."""

    host: str = Field(min_length=1, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("edgevid", pattern=r"^[^#+]+$", description="topics are <topic_prefix>/<source>/...")
    discovery_prefix: str | None = Field("homeassistant", description="Home Assistant discovery prefix ('' or null: no discovery)")
    binary_sensors: list[str] = Field(default_factory=list, description="labels that get a Home Assistant binary sensor per source")
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = Field(None, description="CA certificate file: connect with TLS")
    client_id: str | None = None
    keepalive: int = Field(30, ge=5, le=3600, description="seconds; the broker sends the last will after 1.5x this without us")
    queue: int = Field(1000, ge=1, le=1_000_000, description="messages held while the broker is slow or away; more are dropped and counted")
    reconnect_min: float = Field(1.0, gt=0, le=3600)
    reconnect_max: float = Field(30.0, gt=0, le=86400)


class ModelsConfig(_Strict):
    dir: Path | None = Field(None, description="model directory (default: $EDGEVID_MODEL_DIR or XDG data dir)")
    extractor: Path | None = None
    head: Path | None = Field(None, description="head folder (default: the bundled one)")
    threads: int = Field(2, ge=1, le=64)


class DaemonConfig(_Strict):
    """The whole ``edgevid run`` configuration."""

    sources: list[SourceConfig] = Field(min_length=1)
    publish: PublishConfig = PublishConfig()
    models: ModelsConfig = ModelsConfig()
    metrics: MetricsConfig = MetricsConfig()
    mqtt: MqttConfig | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _unique_ids(self) -> "DaemonConfig":
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids must be unique, got {ids}")
        return self


ENV_PREFIX = "EDGEVID_"


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``EDGEVID_<KEY>[__<SUB>...]`` variables naming config keys, as a nested dict, and which
    variable set each key path (so errors can name it). Other ``EDGEVID_*`` variables (such as
    ``EDGEVID_MODEL_DIR``) are not config keys and are left alone."""
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
        if path[0] not in DaemonConfig.model_fields or not all(path):
            continue
        raw = environ[name]
        value: Any = raw
        if len(path) == 1 and path[0] != "log_level":  # a whole table or list
            try:
                value = json.loads(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected JSON for the whole [{path[0]}] {'list' if path[0] == 'sources' else 'table'}, "
                                  f"got {raw[:40]!r}; set one key with {name}__<KEY>=value") from None
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a table")
            node = child
        node[path[-1]] = value
        origin[path] = name
    return data, origin


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> DaemonConfig:
    """Read and validate a TOML config with environment overrides; any problem is one ConfigError
    naming the file and key, or the environment variable the bad value came from."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    env, origin = env_overrides(os.environ if environ is None else environ)
    try:
        return DaemonConfig(**_merge(data, env))
    except ValidationError as exc:
        loc = tuple(str(p) for p in exc.errors()[0]["loc"])
        var = next((origin[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origin), None)
        raise ConfigError(f"{var if var else path}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """The first validation error as ``key.path: message`` (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"
