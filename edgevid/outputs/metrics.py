"""Opt-in Prometheus endpoint (``[metrics] listen = "127.0.0.1:9108"``): the status counters and
stage-latency histograms, named by Prometheus conventions.

``prometheus_client`` is an optional extra (``pip install 'edgevid[metrics]'``), imported only when
the endpoint is configured. Counters are read from the sources' own statistics at scrape time (one
truth: the same numbers as the ``status`` message); histograms are observed by the daemon.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..messages import OutputStatus, Status

log = logging.getLogger("edgevid.outputs.metrics")

#: Seconds: a frame's extractor share is ~5-150 ms, the head ~1-40 ms, capture to publish up to ~2 s.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

#: SourceStatus counters exported as ``edgevid_<name>_total{source=...}``: (status field, metric name, help).
COUNTERS = (
    ("frames_in", "frames", "frames read from the source"),
    ("sampled", "frames_sampled", "distinct frames that filled a window slot"),
    ("extracted", "frames_extracted", "frames that went through the extractor"),
    ("dropped", "frames_dropped", "sampled frames never extracted (the worker fell behind)"),
    ("predictions", "predictions", "predictions published"),
    ("reconnects", "reconnects", "times the source was reopened"),
    ("gated_frames", "frames_gated", "sampled frames the motion gate kept from the extractor (a still picture)"),
    ("idle_windows", "windows_idle", "windows published as idle (the motion gate found them still)"),
    ("idle_s", "idle_seconds", "seconds the motion gate found the source's picture still"),
)
STATES = ("starting", "running", "paused", "reconnecting", "ended", "failed")


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); ValueError with what was expected."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as 127.0.0.1:9108, got {text!r}")
    return host.strip("[]"), int(port)


def require_client():
    """prometheus_client, or a one-line ConfigError saying how to install it."""
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError(
            "metrics.listen is set but prometheus_client is not installed: pip install 'edgevid[metrics]'"
        ) from None
    return prometheus_client


def families(st: "Status"):
    """The status message as Prometheus metric families: one truth, read at scrape time."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for field, name, help_text in COUNTERS:
        c = CounterMetricFamily(f"edgevid_{name}", help_text, labels=["source"])
        for s in st.sources:
            c.add_metric([s.id], getattr(s, field))
        yield c
    skipped = CounterMetricFamily(
        "edgevid_windows_skipped", "windows not published, by reason", labels=["source", "reason"]
    )
    up = GaugeMetricFamily("edgevid_source_up", "1 while the source is running", labels=["source"])
    motion = GaugeMetricFamily(
        "edgevid_source_motion", "1 while the motion gate sees motion (sources with a gate)", labels=["source"]
    )
    state = GaugeMetricFamily(
        "edgevid_source_state", "the source's state (1 for the current one)", labels=["source", "state"]
    )
    for s in st.sources:
        for reason, n in sorted(s.skipped.items()):
            skipped.add_metric([s.id, reason], n)
        up.add_metric([s.id], float(s.state == "running"))
        if s.motion is not None:
            motion.add_metric([s.id], float(s.motion))
        for name in STATES:
            state.add_metric([s.id, name], float(s.state == name))
    yield skipped
    yield up
    yield motion
    yield state
    yield GaugeMetricFamily(
        "edgevid_overloaded", "1 while live sources are served in turns", value=float(st.overloaded)
    )
    yield GaugeMetricFamily("edgevid_uptime_seconds", "seconds since the daemon started", value=st.uptime_s)
    for out, o in sorted(st.outputs.items()):
        yield CounterMetricFamily(
            f"edgevid_{out}_sent", f"messages the {out} output delivered (for mqtt: the broker took them)", value=o.sent
        )
        if o.dropped is not None:  # zmq cannot know
            yield CounterMetricFamily(
                f"edgevid_{out}_dropped",
                f"messages the {out} output dropped (queue full or connection lost)",
                value=o.dropped,
            )
        yield GaugeMetricFamily(
            f"edgevid_{out}_connected",
            f"1 while the {out} output is connected and delivering",
            value=float(o.connected),
        )
        yield GaugeMetricFamily(
            f"edgevid_{out}_queued", f"messages the {out} output holds (queued or not yet taken)", value=o.queued
        )
        yield CounterMetricFamily(f"edgevid_{out}_reconnects", f"reconnections of the {out} output", value=o.reconnects)


def record_families(st) -> list:
    """The clip writer's own counters (edgevid.record.RecordStats)."""
    from prometheus_client.core import CounterMetricFamily

    return [
        CounterMetricFamily("edgevid_record_bytes", "bytes of clips written", value=st.bytes_written),
        CounterMetricFamily("edgevid_record_frames", "frames written into clips", value=st.frames_written),
        CounterMetricFamily("edgevid_record_deleted", "clips deleted by record.quota_mb", value=st.deleted_by_quota),
        CounterMetricFamily("edgevid_record_failed", "clips the encoder could not write", value=st.clips_failed),
    ]


class Metrics:
    """The registry, its collector over ``status()`` and the HTTP server thread."""

    def __init__(self, listen: str, status: Callable[[], "Status"], recorder=None) -> None:
        prom = require_client()
        self.registry = prom.CollectorRegistry()
        self._status = status

        class _StatusCollector:
            def collect(_self):
                yield from families(self._status())
                if recorder is not None:  # [record]: beside edgevid_record_sent (clips) and _dropped (frames)
                    yield from record_families(recorder.writer.stats)

        self.registry.register(_StatusCollector())
        self.stage = prom.Histogram(
            "edgevid_inference_seconds",
            "seconds per frame (extract) or per window (head)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.latency = prom.Histogram(
            "edgevid_capture_to_publish_seconds",
            "newest frame's capture to its prediction's publication",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = prom.Counter(
            "edgevid_events", "event messages published", ["source", "phase"], registry=self.registry
        )
        host, port = parse_listen(listen)
        try:
            self.server, self.thread = prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"metrics.listen: cannot listen on {listen}: {exc}") from None
        log.info("metrics on http://%s/metrics", listen)

    # -- as an output: events are counted as they are published; the rest is read at scrape time
    name = "metrics"

    def send(self, topic: str, message) -> None:
        if getattr(message, "type", None) == "event":
            self.events.labels(message.source, message.phase).inc()

    def status(self) -> "OutputStatus | None":
        return None  # a pull endpoint: nothing queued, nothing to drop

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
