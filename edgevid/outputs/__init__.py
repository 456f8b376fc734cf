"""Where the daemon's messages go. Every output implements :class:`Output`; :data:`OUTPUTS` is the
one registry ``run`` builds them from (and ``config check`` checks them with). Adding an output is
one module and one line in :data:`OUTPUTS`.

- :mod:`.zeromq`: ZeroMQ PUB, the primary bus (always on);
- :mod:`.mqtt`: MQTT and Home Assistant discovery (``[mqtt]``);
- :mod:`.metrics`: the Prometheus endpoint (``[metrics] listen``);
- :mod:`edgevid.record`: recording clips to label (``[record] enabled``; built with the daemon, whose
  sources feed its rings);
- :mod:`edgevid.web`: the web page (``[web] listen``);
- :mod:`.render`: the text form of a message (``edgevid subscribe``, the live check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    from ..config import DaemonConfig
    from ..messages import OutputStatus, Status

STATUS_TOPIC = "status"


def prediction_topic(source: str) -> str:
    return f"pred/{source}"


def event_topic(source: str) -> str:
    return f"event/{source}"


class Output(Protocol):
    """Takes every message on the event loop, in order, and never blocks it."""

    name: str

    def send(self, topic: str, message) -> None: ...

    def status(self) -> "OutputStatus | None":
        """Its counters for the heartbeat (None: nothing to report, e.g. a pull endpoint)."""

    def close(self) -> None:
        """Stop without blocking. An output that needs the loop to finish (a server) may also have
        ``async def wait_closed()``, which the service awaits after every ``close``."""


@dataclass(frozen=True)
class Context:
    """What an output may need to know of the daemon."""

    sources: list[str]
    labels: list[str]
    model: str
    status: Callable[[], "Status"]  # a peek at the current status (metrics scrapes)
    hop_s: Mapping[str, float] = field(default_factory=dict)  # each source's hop (seconds)
    min_score: Mapping[str, float | None] = field(default_factory=dict)  # each source's, resolved
    head_dir: Any = None  # the head's folder (Path): its report and pictures
    manifest: dict | None = None  # the head's manifest, as JSON
    snapshots: Mapping[str, Any] = field(default_factory=dict)  # source -> web.snapshot.SnapshotSlot ([web] on)
    recorder: Any = None  # edgevid.record.Recorder ([record] enabled): the web page's clips and record button


@dataclass(frozen=True)
class Kind:
    """A kind of output: whether the config turns it on, a check ``config check`` runs without
    connecting, and how to open it. Modules are imported only when the output is on."""

    name: str
    enabled: Callable[["DaemonConfig"], bool]
    check: Callable[["DaemonConfig", list[str]], None]
    open: Callable[["DaemonConfig", Context], Output]


def _zmq(cfg: "DaemonConfig", ctx: Context) -> Output:
    from .zeromq import Publisher

    return Publisher(cfg.publish)


def _metrics_check(cfg: "DaemonConfig", labels: list[str]) -> None:
    from .metrics import require_client

    require_client()


def _metrics(cfg: "DaemonConfig", ctx: Context) -> Output:
    from .metrics import Metrics

    return Metrics(cfg.metrics.listen, ctx.status, ctx.recorder)


def _mqtt_check(cfg: "DaemonConfig", labels: list[str]) -> None:
    from .mqtt import check

    check(cfg.mqtt, labels)


def _mqtt(cfg: "DaemonConfig", ctx: Context) -> Output:
    from .mqtt import MqttOutput

    gated = [s.id for s in cfg.sources if s.gate.enabled]
    return MqttOutput(cfg.mqtt, ctx.sources, ctx.labels, ctx.model, gated)


def _record_check(cfg: "DaemonConfig", labels: list[str]) -> None:
    from ..record import prepare_dirs

    prepare_dirs(cfg.record)


def _web_check(cfg: "DaemonConfig", labels: list[str]) -> None:
    from ..web.server import require_aiohttp

    require_aiohttp()


def _web(cfg: "DaemonConfig", ctx: Context) -> Output:
    from ..web.server import WebOutput

    return WebOutput(cfg.web, ctx)


#: In publishing order: ZeroMQ first (the primary bus).
OUTPUTS: tuple[Kind, ...] = (
    Kind("zmq", lambda cfg: True, lambda cfg, labels: None, _zmq),
    Kind("metrics", lambda cfg: bool(cfg.metrics.listen), _metrics_check, _metrics),
    Kind("mqtt", lambda cfg: cfg.mqtt is not None, _mqtt_check, _mqtt),
    Kind("record", lambda cfg: bool(cfg.recorded()), _record_check, lambda cfg, ctx: ctx.recorder),
    Kind("web", lambda cfg: bool(cfg.web.listen), _web_check, _web),
)


def check_outputs(cfg: "DaemonConfig", labels: list[str]) -> None:
    """What each configured output can check before serving (raises a ConfigError)."""
    for kind in OUTPUTS:
        if kind.enabled(cfg):
            kind.check(cfg, labels)


def open_outputs(cfg: "DaemonConfig", ctx: Context) -> list[Output]:
    """Every configured output, opened in order; one that fails closes those opened before."""
    opened: list[Output] = []
    try:
        for kind in OUTPUTS:
            if kind.enabled(cfg):
                opened.append(kind.open(cfg, ctx))
    except BaseException:
        for out in reversed(opened):
            out.close()
        raise
    return opened
