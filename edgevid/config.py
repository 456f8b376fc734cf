"""Daemon configuration: one TOML file plus ``EDGEVID_*`` environment overrides, strictly checked.

Unknown keys are errors naming their path (``sources.0.windw``), as are wrong types; environment
variables use ``__`` for nesting, e.g. ``EDGEVID_PUBLISH__ENDPOINT=tcp://0.0.0.0:5555``, and a
whole table or list is given as JSON (``EDGEVID_SOURCES='[{"id": "cam", "uri": "0"}]'``). An error
in a value that came from the environment names the variable, not the file.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .capture import FPS_RANGE, size_problem
from .errors import ConfigError
from .gate import GateConfig
from .sources.pipe import EVEN_HEIGHT, EVEN_WIDTH, PIXEL_FORMATS, split_command


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DAY = 86400.0


class SourceConfig(_Strict):
    """One camera, file, stream or frame-writing command, classified over a sliding window."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64, description="names the topic: pred/<id>")
    uri: str = Field(
        min_length=1,
        description="camera index ('0'), device path, video file, rtsp:// / http(s):// URL, "
        "or for kind = 'pipe' a command line writing frames to stdout",
    )
    kind: str = Field(
        "auto", description="auto (from the uri), or a kind of edgevid.sources.kinds: camera, stream, pipe, file"
    )
    window: float | None = Field(
        None, ge=0.1, le=600, description="seconds classified per prediction (default: the head's trained window)"
    )
    hop: float = Field(
        0.5, gt=0, le=600, description="seconds between predictions, rounded to whole sampling intervals"
    )
    realtime: bool = Field(
        True, description="files: pace at the file's own timestamps (False: as fast as inference allows)"
    )
    loop: bool = Field(False, description="files: start again at the end")
    top_k: int = Field(3, ge=1, le=1000)
    min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="below this (calibrated) score the top-1 is published as "
        "'unknown'; also the score an event's label must reach (unset: the head's recommended "
        "min_score from its manifest, else 0: always name a label)",
    )
    events: "EventsConfig" = Field(
        default_factory=lambda: EventsConfig(), description="event/<id> start/update/end from the predictions"
    )
    gate: GateConfig = Field(
        default_factory=GateConfig,
        description="motion gate: while the picture is still, nothing runs and windows are published as 'idle'",
    )
    open_timeout: float = Field(10.0, gt=0, le=3600)
    read_timeout: float = Field(5.0, gt=0, le=3600)
    stall_timeout: float = Field(5.0, gt=0, le=3600, description="no frame for this long -> reopen")
    reconnect_min: float = Field(0.5, gt=0, le=3600)
    reconnect_max: float = Field(30.0, gt=0, le=_DAY)
    # kind = "pipe" only: what the command writes (checked below, in this order).
    pixel_format: Literal[PIXEL_FORMATS] | None = Field(
        None, validate_default=True, description="pipe: frame layout on stdout"
    )
    width: int | None = Field(None, ge=16, le=8192, validate_default=True, description="pipe: frame width (pixels)")
    height: int | None = Field(None, ge=16, le=8192, validate_default=True, description="pipe: frame height (pixels)")
    fps: float | None = Field(
        None, ge=FPS_RANGE[0], le=FPS_RANGE[1], validate_default=True, description="pipe: the command's frame rate"
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from .sources.kinds import NAMES  # the registry: a new kind needs no change here

        if kind != "auto" and kind not in NAMES:
            raise PydanticCustomError("kind", "must be auto or one of {names}", {"names": ", ".join(NAMES)})
        return kind

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
            too_big = size_problem(self.width, self.height) if self.width and self.height else None
            if too_big:
                raise PydanticCustomError("pipe_size", "width, height: {why}", {"why": too_big})
        return self

    def for_head(self, recommended: float | None) -> "SourceConfig":
        """This source with ``min_score`` set: as configured, else the head's recommended value
        (chosen on held-out data when it was trained), else 0."""
        if self.min_score is not None:
            return self
        return self.model_copy(update={"min_score": recommended if recommended is not None else 0.0})

    def resolved_kind(self) -> str:
        """The kind's name: as configured, or the first kind of the registry that knows the uri."""
        if self.kind != "auto":
            return self.kind
        from .sources.kinds import detect

        return detect(self.uri).name


class EventsConfig(_Strict):
    """Debounce of a source's action events (see edgevid.events)."""

    enabled: bool = True
    min_duration: float = Field(
        1.0, ge=0, le=3600, description="seconds a label stays top-1 above min_score before it starts"
    )
    end_after: float = Field(
        1.5, gt=0, le=3600, description="seconds its label is not top-1 with min_score before an event ends"
    )
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
            return (
                f"sources.{source}.window: {self.window:g} s differs from the head's trained window "
                f"{self.head_window:g} s by more than 25 %; expect lower accuracy"
            )
        return None


def source_timing(cfg: SourceConfig, m: int, head_window: float | None) -> SourceTiming:
    """The source's window (its own, else the head's) and its hop in whole sampling intervals."""
    window = cfg.window if cfg.window is not None else head_window
    if window is None:
        raise ConfigError(
            f"sources.{cfg.id}.window: the head's manifest records no trained window; set window (seconds)"
        )
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
        return _listen_address(v)


def _listen_address(v: str | None) -> str | None:
    """A ``host:port`` to listen on (metrics, the web page), or None: off."""
    if v is not None:
        from .outputs.metrics import parse_listen

        parse_listen(v)
    return v


class WebConfig(_Strict):
    """Opt-in web page served by the daemon (needs the ``web`` extra: aiohttp); see edgevid.web."""

    listen: str | None = Field(
        None, description="host:port to serve the page on, e.g. 127.0.0.1:8090 (default: off; loopback by default)"
    )
    token: str | None = Field(
        None,
        min_length=16,
        max_length=256,
        validate_default=True,
        description="required when listen is not a loopback address: requests send it as 'Authorization: Bearer' "
        "or ?token=",
    )
    snapshot_fps: float = Field(1.0, ge=0.1, le=5.0, description="live-view JPEGs per second per source, at most")
    history_s: float = Field(300.0, ge=10, le=3600, description="seconds of predictions the timeline keeps")

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return _listen_address(v)

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A token travels in a header; without one, only a loopback listen is served."""
        if v is not None and not all(0x21 <= ord(ch) <= 0x7E for ch in v):
            raise PydanticCustomError("web_token", "printable ASCII without spaces only (it travels in a header)")
        listen = info.data.get("listen")
        if v is None and listen is not None and not is_loopback(listen):
            raise PydanticCustomError(
                "web_token",
                "required when web.listen ({listen}) is not a loopback address (generate one: openssl rand -hex 16)",
                {"listen": listen},
            )
        return v


class RecordConfig(_Strict):
    """Opt-in recording of short clips to label and train on (see edgevid.record): nothing is recorded
    unless ``enabled``; then only the listed ``sources`` (empty: all) keep a pre-roll ring in memory."""

    enabled: bool = Field(False, description="record clips at all (default off: nothing is recorded or kept)")
    sources: list[str] = Field([], description="source ids that record (default: every source)")
    dir: Path = Field(Path("recordings"), description="folder of clips waiting to be labelled (quota applies)")
    dataset: Path | None = Field(
        None, description="labelled clips move into <dataset>/<label>/ (default: <dir>/dataset; no quota)"
    )
    pre_s: float = Field(2.0, ge=0, le=30, description="seconds before a trigger a clip starts (pre-roll)")
    post_s: float = Field(2.0, ge=0, le=60, description="seconds after an event ends a clip goes on (post-roll)")
    max_s: float = Field(30.0, ge=1, le=600, description="longest clip (seconds)")
    quota_mb: float = Field(500.0, ge=0.01, le=1e6, description="MB of unlabelled clips kept (oldest deleted first)")
    events: bool = Field(True, description="record each event (start..end with pre- and post-roll)")
    unsure: bool = Field(False, description="record windows below min_score or with top-2 margin below margin")
    margin: float = Field(0.1, ge=0, le=1, description="unsure: top-1 minus top-2 score below this")
    unsure_every_s: float = Field(60.0, ge=0, le=86400, description="at most one unsure clip per source this often")
    fps: float = Field(10.0, ge=1, le=30, description="frames per second kept in clips (and the pre-roll ring)")
    max_width: int = Field(480, ge=64, le=1920, description="frames wider than this are downscaled first")
    ring_mb: float = Field(32.0, ge=1, le=1024, description="MB of pre-roll frames held per source, at most")
    queue: int = Field(256, ge=8, le=10_000, description="frames waiting for the clip writer, at most (then dropped)")

    def dataset_dir(self) -> Path:
        return self.dataset if self.dataset is not None else self.dir / "dataset"


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` binds only this machine (127.0.0.0/8, ::1, localhost): no token needed."""
    import ipaddress

    from .outputs.metrics import parse_listen

    host = parse_listen(listen)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


MQTT_STRING_MAX = 65535  # bytes: the length field of every MQTT string (topic name, client id, user name)
# What the daemon appends to each prefix (mqtt.py builds these topics): a source id is at most 64
# ASCII characters, a binary sensor's label at most MQTT_LABEL_MAX bytes.
MQTT_LABEL_MAX = 255
_TOPIC_TAIL = len("/") + 64 + len("/prediction")
_DISCOVERY_TAIL = len("/binary_sensor/edgevid_") + 64 + len("/") + MQTT_LABEL_MAX + len("/config")


def _mqtt_text(value: str, *, max_bytes: int = MQTT_STRING_MAX) -> bytes:
    """An MQTT UTF-8 string as brokers accept it (MQTT 3.1.1 section 1.5.3, and what Mosquitto
    enforces): valid UTF-8, no NUL, no control characters, no non-characters, at most
    ``max_bytes`` bytes."""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("mqtt_utf8", "not valid UTF-8 (MQTT strings must be)") from None
    for ch in value:
        c = ord(ch)
        if c == 0:
            raise PydanticCustomError("mqtt_nul", "contains a NUL character, which MQTT does not allow")
        if c < 0x20 or 0x7F <= c <= 0x9F or 0xFDD0 <= c <= 0xFDEF or (c & 0xFFFE) == 0xFFFE:
            raise PydanticCustomError(
                "mqtt_char", "contains the character {c}, which MQTT brokers refuse", {"c": f"U+{c:04X}"}
            )
    if len(raw) > max_bytes:
        raise PydanticCustomError(
            "mqtt_long",
            "{n} bytes long; at most {max} bytes here (MQTT strings hold at most 65535)",
            {"n": len(raw), "max": max_bytes},
        )
    return raw


def _mqtt_topic_part(value: str, tail: int) -> str:
    """A prefix of the topic names the daemon publishes to: no wildcards, not a broker topic ($),
    and short enough that the longest topic under it (``tail`` bytes more) fits an MQTT string."""
    if not value:
        raise PydanticCustomError("mqtt_empty", "must not be empty")
    _mqtt_text(value, max_bytes=MQTT_STRING_MAX - tail)
    for wildcard in "#+":
        if wildcard in value:
            raise PydanticCustomError(
                "mqtt_wildcard", "contains the wildcard '{w}'; topics published to cannot (MQTT)", {"w": wildcard}
            )
    if value.startswith("$"):
        raise PydanticCustomError(
            "mqtt_dollar", "starts with '$': such topics are the broker's own ($SYS), clients cannot publish there"
        )
    return value


class MqttConfig(_Strict):
    """Optional MQTT output beside ZeroMQ (needs the ``mqtt`` extra: paho-mqtt); see edgevid.outputs.mqtt."""

    host: str = Field(min_length=1, max_length=253, description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("edgevid", description="topics are <topic_prefix>/<source>/...")
    discovery_prefix: str | None = Field(
        "homeassistant", description="Home Assistant discovery prefix ('' or null: no discovery)"
    )
    binary_sensors: list[str] = Field(
        default_factory=list, description="labels that get a Home Assistant binary sensor per source"
    )
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = Field(None, description="CA certificate file: connect with TLS")
    client_id: str | None = None
    keepalive: int = Field(
        30, ge=5, le=3600, description="seconds; the broker sends the last will after 1.5x this without us"
    )
    queue: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="messages held while the broker is slow or away; more are dropped and counted",
    )
    ack_timeout: float = Field(
        10.0,
        ge=0.5,
        le=3600,
        description="seconds a message may wait for the broker to take it (QoS 1: its "
        "acknowledgement) before the broker is reported as not connected",
    )
    reconnect_min: float = Field(1.0, gt=0, le=3600)
    reconnect_max: float = Field(30.0, gt=0, le=86400)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if any(ch.isspace() or ord(ch) < 0x20 or ch in "/#?@" for ch in v):
            raise PydanticCustomError(
                "mqtt_host", "expected a host name or IP address (no spaces, control characters, '/', '#', '?' or '@')"
            )
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, v: str) -> str:
        return _mqtt_topic_part(v, _TOPIC_TAIL)

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery_prefix(cls, v: str | None) -> str | None:
        return _mqtt_topic_part(v, _DISCOVERY_TAIL) if v else v

    @field_validator("binary_sensors")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        for i, label in enumerate(v):
            try:
                _mqtt_topic_part(label, MQTT_STRING_MAX - MQTT_LABEL_MAX)
                if "/" in label:
                    raise PydanticCustomError("mqtt_level", "contains '/'; a label is one topic level")
            except PydanticCustomError as exc:
                raise PydanticCustomError(
                    "mqtt_label", "item {i} ('{label}'): {why}", {"i": i, "label": label[:40], "why": str(exc)}
                ) from None
        return v

    @field_validator("username", "client_id")
    @classmethod
    def _string(cls, v: str | None) -> str | None:
        if v is not None:
            _mqtt_text(v)
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: str | None) -> str | None:
        if v is not None and len(v.encode("utf-8", "surrogateescape")) > MQTT_STRING_MAX:
            raise PydanticCustomError("mqtt_long", "longer than 65535 bytes, the most MQTT allows")
        return v


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
    web: WebConfig = WebConfig()
    record: RecordConfig = RecordConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _unique_ids(self) -> "DaemonConfig":
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids must be unique, got {ids}")
        if unknown := [r for r in self.record.sources if r not in ids]:
            raise ValueError(f"record.sources: no source {unknown[0]!r} (sources: {', '.join(ids)})")
        return self

    def recorded(self) -> list[str]:
        """The ids of the sources that record (none unless record.enabled)."""
        if not self.record.enabled:
            return []
        return [s.id for s in self.sources if not self.record.sources or s.id in self.record.sources]


ENV_PREFIX = "EDGEVID_"
CONFIG_MAX_BYTES = 1 << 20  # a config is a few kB; anything bigger is the wrong file
MAX_DEPTH = 16  # tables and lists inside each other; a config nests at most 4 deep


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> tuple[str, ...] | None:
    """The key path where ``value`` nests deeper than ``limit`` tables/lists, else None (iterative:
    no recursion limit to hit)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        node, where = stack.pop()
        if len(where) > limit:
            return where
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((child, (*where, str(key))) for key, child in items)
    return None


def _parse_json(name: str, raw: str, what: str) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply to be a config value") from None
    except ValueError:
        raise ConfigError(
            f"{name}: expected JSON for the whole {what}, got {raw[:40]!r}; set one key with {name}__<KEY>=value"
        ) from None
    if _too_deep(value, MAX_DEPTH - 1) is not None:
        raise ConfigError(f"{name}: nested more than {MAX_DEPTH} levels deep; a config nests at most 4")
    return value


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``EDGEVID_<KEY>[__<SUB>...]`` variables naming config keys, as a nested dict, and which
    variable set each key path (so errors can name it). Other ``EDGEVID_*`` variables (such as
    ``EDGEVID_MODEL_DIR``) are not config keys and are left alone. A number as a part names an item
    of a list in the file: ``EDGEVID_SOURCES__0__URI``."""
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if path[0] not in DaemonConfig.model_fields or not all(path):
            continue
        if len(path) > MAX_DEPTH:
            raise ConfigError(f"{name}: more than {MAX_DEPTH} key parts; a config nests at most 4")
        raw = environ[name]
        value: Any = raw
        if len(path) == 1 and path[0] != "log_level":  # a whole table or list
            value = _parse_json(name, raw, f"[{path[0]}] {'list' if path[0] == 'sources' else 'table'}")
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a table")
            node = child
        node[path[-1]] = value
        origin[path] = name
    return data, origin


def _merge(
    base: dict[str, Any], over: dict[str, Any], origin: Mapping[tuple[str, ...], str] = {}, where: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``over`` on top of ``base``; tables merge key by key, numbered keys (from
    ``EDGEVID_SOURCES__0__URI``) into the items of a list, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        here = (*where, key)
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _merge(old, value, origin, here)
        elif isinstance(value, dict) and here not in origin:  # set through numbered parts, not as JSON
            if not all(k.isdigit() for k in value) and isinstance(old, list):
                var = next(
                    v for p, v in sorted(origin.items()) if p[: len(here)] == here and not p[len(here)].isdigit()
                )
                raise ConfigError(
                    f"{var}: {'.'.join(here)} is a list: name an item by its number, e.g. "
                    f"{ENV_PREFIX}{'__'.join(here).upper()}__0__..."
                )
            if all(k.isdigit() for k in value):
                items = list(old) if isinstance(old, list) else []
                for index, item in sorted(value.items(), key=lambda kv: int(kv[0])):
                    i = int(index)
                    if i >= len(items):
                        var = next(v for p, v in sorted(origin.items()) if p[: len(here) + 1] == (*here, index))
                        has = (
                            f"has {len(items)} item(s) in the config file, so no item {i}"
                            if isinstance(old, list)
                            else "is not a list in the config file, so it has no item to override"
                        )
                        whole = (
                            f"the whole list as JSON in {ENV_PREFIX}{key.upper()}"
                            if len(here) == 1
                            else f"the whole [{here[0]}] table as JSON in {ENV_PREFIX}{here[0].upper()}, or the list "
                            "in the file"
                        )
                        raise ConfigError(f"{var}: {'.'.join(here)} {has}; give {whole}")
                    items[i] = (
                        _merge(items[i], item, origin, (*here, index))
                        if isinstance(item, dict) and isinstance(items[i], dict)
                        else item
                    )
                out[key] = items
            else:  # a table the file does not have: its keys may name list items in turn
                out[key] = _merge({}, value, origin, here)
        else:
            out[key] = value
    return out


def _unreadable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"{path}: cannot read: {(exc.strerror or str(exc)).lower()}")


def _read(path: Path) -> str:
    """The config file's text: a regular file (a FIFO or device is refused, not waited on or read
    forever) of at most CONFIG_MAX_BYTES."""
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        )  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = (
            "a folder"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a character device"
            if stat.S_ISCHR(mode)
            else "a block device"
            if stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a file"
        )
        raise ConfigError(f"{path}: not a regular file ({kind}); expected a TOML config file")
    with open(fd, "rb", closefd=True) as f:
        try:
            data = f.read(CONFIG_MAX_BYTES + 1)
        except OSError as exc:
            raise _unreadable(path, exc) from None
    if len(data) > CONFIG_MAX_BYTES:
        raise ConfigError(
            f"{path}: larger than {CONFIG_MAX_BYTES // 1024} KiB; expected a TOML config file of a few kB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text (byte {exc.start})") from None


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> DaemonConfig:
    """Read and validate a TOML config with environment overrides; any problem is one ConfigError
    naming the file and key, or the environment variable the bad value came from."""
    path = Path(path)
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML for a config: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError(
            f"{path}: {'.'.join(deep[:4])}...: nested more than {MAX_DEPTH} levels deep; a config nests at most 4"
        )
    env, origin = env_overrides(os.environ if environ is None else environ)
    try:
        return DaemonConfig(**_merge(data, env, origin))
    except ValidationError as exc:
        loc = tuple(str(p) for p in exc.errors()[0]["loc"])
        var = next((origin[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origin), None)
        if var is None:  # the value at loc was built from variables naming keys under it
            var = next((v for p, v in sorted(origin.items()) if p[: len(loc)] == loc), None) if loc else None
        raise ConfigError(f"{var if var else path}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """The first validation error as ``key.path: message`` (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"
