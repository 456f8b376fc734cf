"""What ``edgevid run`` holds: models, per-source timing, sources, windows and the hand-over, and
how each message reaches the outputs. The worker (:mod:`.worker`) and the service (:mod:`.service`)
act on it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import DaemonConfig, SourceTiming, source_timing
from ..events import SourceEvents
from ..extractor import preprocess
from ..messages import ModelIds, Prediction, Status
from ..motion import MotionEstimator
from ..outputs import Output, event_topic, prediction_topic
from ..pipeline import ClipClassifier
from ..record import Recorder
from ..scheduler import Admission
from ..sources.base import Captured
from ..sources.kinds import kind_of
from ..sources.source import FrameSource
from ..timing import Fill, Liveness
from ..web.snapshot import SnapshotSlot
from ..windows import WindowAssembler
from .feed import FeedQueue
from .load import LoadMeter
from .status import Rates, source_status

log = logging.getLogger("edgevid.daemon")

#: The inference worker beats at least every 0.2 s (its idle wait); quiet longer than this, it hangs.
WORKER_GRACE_S = 5.0


def window_of(classifier: ClipClassifier) -> float | None:
    ts = classifier.head.manifest.timescale
    return ts.window_s if ts else None


def source_timings(cfg: DaemonConfig, classifier: ClipClassifier) -> dict[str, SourceTiming]:
    """Each source's window and hop for this head, logged with the models (and any warning)."""
    head, extractor = classifier.head, classifier.extractor
    log.info(
        "models: head %s (%s, M = %d, trained window %s s), extractor %s (%s)",
        head.manifest.name,
        head.id,
        head.frames,
        window_of(classifier),
        Path(extractor.path).name,
        extractor.id,
    )
    timing = {s.id: source_timing(s, head.frames, window_of(classifier)) for s in cfg.sources}
    for s in cfg.sources:
        t = timing[s.id]
        if warning := t.warning(s.id):
            log.warning(warning)
        log.info(
            "source %s: window %.3g s, %d slots every %.3g s, a prediction every %d slots (%.3g s)",
            s.id,
            t.window,
            t.m,
            t.dt,
            t.hop,
            t.hop_s,
        )
    return timing


class Daemon:
    """The daemon's state. Source threads call the Sink methods; the worker takes what they hand
    over; messages go to every output on the event loop, in order."""

    def __init__(self, cfg: DaemonConfig, classifier: ClipClassifier, config_path: Path | None = None) -> None:
        self.cfg, self.config_path = cfg, config_path
        self.head, self.extractor = classifier.head, classifier.extractor
        self.models = ModelIds(extractor=self.extractor.id, head=self.head.id)
        self.timing, m = source_timings(cfg, classifier), self.head.frames
        recommended = self.head.manifest.min_score
        self.source_cfg = {s.id: s.for_head(recommended) for s in cfg.sources}  # min_score resolved
        self.stop_event = threading.Event()
        self.cv = threading.Condition()
        self.queue: FeedQueue[Captured] = FeedQueue(
            {s.id: not (kind_of(s).file and not s.realtime) for s in cfg.sources},
            gated={s.id: m for s in cfg.sources if s.gate.enabled},
        )
        self.windows = {s.id: WindowAssembler(m, self.timing[s.id].hop) for s in cfg.sources}
        self.admission = Admission([s.id for s in cfg.sources if self.queue.feeds[s.id].live])
        self.admitted = self.admission.state
        # A head reading the motion stream: sources keep each frame's small grey image, the worker
        # turns (previous, sampled) pairs into descriptors beside the extractor's features.
        self.motion = MotionEstimator(self.head.motion) if self.head.motion is not None else None
        size, grey = self.extractor.input_size, (self.motion.grey if self.motion is not None else None)
        # The web page's live view (``[web] listen``): one latest-JPEG slot per source.
        self.snapshots = {s.id: SnapshotSlot(cfg.web.snapshot_fps) for s in cfg.sources} if cfg.web.listen else {}
        # Recording ([record] enabled): a pre-roll ring per recording source and the clip writer's thread.
        recorded = cfg.recorded()
        self.recorder = Recorder(cfg.record, recorded, self.models, self.head.manifest.name) if recorded else None
        rings = self.recorder.rings if self.recorder is not None else {}
        self.sources = {
            s.id: FrameSource(
                s,
                self.timing[s.id],
                self,
                self.stop_event,
                lambda f: preprocess(f, size),
                motion_grey=grey,
                snapshot=self.snapshots.get(s.id),
                motion_spec=self.head.motion,
                ring=rings.get(s.id),
            )
            for s in cfg.sources
        }
        self.seq = {s.id: 0 for s in cfg.sources}
        if self.recorder is not None:
            self.recorder.min_score = {sid: c.min_score for sid, c in self.source_cfg.items()}
        self.events = SourceEvents(list(self.source_cfg.values()), self.head.labels)  # fed on the event loop, in order
        self.started = time.monotonic()
        self.load = LoadMeter(self.started)
        self.rates = Rates(self.started)
        self.worker = Liveness(WORKER_GRACE_S, self.started)
        self.outputs: list[Output] = []  # in publishing order, ZeroMQ first (edgevid.outputs)
        self.metrics: Any = None  # the Prometheus output, when on: the worker observes stage times on it
        self.loop: asyncio.AbstractEventLoop | None = None
        self.status_seq = 0

    # -- capture side (source threads): the Sink protocol ---------------------------------------
    def segment(self, source: str) -> None:
        with self.cv:
            self.queue.segment(source)
            self.cv.notify_all()

    def fills(self, source: str, fills: list[Fill[Captured]], new: list[Captured], paused: bool) -> None:
        with self.cv:
            self.queue.fills(source, fills, new, paused)
            self.cv.notify_all()
            while self.queue.full(source) and not self.stop_event.is_set():
                self.cv.wait(0.2)

    def paused(self, source: str) -> bool:
        return self.admitted.overloaded and source not in self.admitted.admitted

    # -- to the event loop, and on it ----------------------------------------------------------
    def post(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the event loop, after what was posted before (from any thread)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(fn, *args)

    def publish_prediction(self, message: Prediction, captured_mono: float, probs: np.ndarray | None) -> None:
        """On the loop: a prediction to every output, and the events it causes (an idle window
        has no scores: no label is present in it)."""
        message.latency.capture_to_publish_ms = round((time.monotonic() - captured_mono) * 1e3, 3)
        if self.metrics is not None:
            self.metrics.latency.labels(message.source).observe(message.latency.capture_to_publish_ms / 1e3)
        self.emit(prediction_topic(message.source), message)
        for event in self.events.prediction(message, probs):
            self.emit(event_topic(event.source), event)

    def stream_break(self, sid: str | None) -> None:
        """A source's stretch ended (``None``: every source's): its open events end."""
        for event in self.events.reset(sid):
            self.emit(event_topic(event.source), event)

    def emit(self, topic: str, message) -> None:
        """Every message to every output, in order; outputs queue without blocking."""
        for out in self.outputs:
            out.send(topic, message)

    def status(self, peek: bool = False) -> Status:
        """The heartbeat's status; ``peek`` (a metrics scrape): the same counters without starting
        a new rate interval or taking a sequence number."""
        now = time.monotonic()
        sources = [
            source_status(
                sid,
                src.stats,
                self.timing[sid],
                self.windows[sid].skipped,
                self.paused(sid),
                self.rates.of(sid, now, src.stats.frames_in, src.stats.extracted, peek),
                src.is_file,
            )
            for sid, src in self.sources.items()
        ]
        self.status_seq += 0 if peek else 1
        cost = None if self.load.cost_s is None else round(self.load.cost_s * 1e3, 3)
        return Status(
            seq=self.status_seq,
            uptime_s=round(now - self.started, 3),
            overloaded=self.admitted.overloaded,
            overload=self.admitted.reason,
            extract_ms_per_frame=cost,
            sources=sources,
            outputs={o.name: st for o in self.outputs if (st := o.status()) is not None},
        )
