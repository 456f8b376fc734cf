"""The inference worker: one thread owns the interpreters (they are not thread-safe). Each turn it
takes a batch from the feed queue, extracts it once per frame, and runs the head on every window
that became complete; every half second it measures the load and decides overload."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..sources.base import Captured
from ..windows import Ready, Skipped
from .core import Daemon
from .feed import Segment, Taken
from .load import TICK_S, OverloadLog
from .predict import prediction

log = logging.getLogger("edgevid.daemon")


class Worker:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.overload_log = OverloadLog()
        self._ended: set[str] = set()  # ended file sources whose last window was handed to the loop

    def run(self) -> None:
        d = self.d
        next_tick = time.monotonic() + TICK_S
        while not d.stop_event.is_set():
            d.worker.beat(time.monotonic())
            try:
                taken = self.take()
                if taken.batch:
                    self.extract(taken.batch)
                for sid in taken.touched:
                    self.publish_ready(sid)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    self.tick()
            except Exception:  # keep serving: one bad frame must not stop the daemon
                log.exception("inference failed")

    def take(self) -> Taken[Captured]:
        """Under the lock: the next batch, and what the sources handed over applied to their windows."""
        d = self.d
        with d.cv:
            if d.queue.idle():
                d.cv.wait(0.2)
            taken = d.queue.take(time.monotonic())
            if taken.batch:
                d.cv.notify_all()  # room for blocked file readers
        for sid, events in taken.events.items():
            win = d.windows[sid]
            for event in events:
                if isinstance(event, Segment):
                    win.reset()
                    d.post(d.stream_break, sid)  # a new stretch: open events end (in order with the predictions)
                else:
                    for f in event.fills:
                        win.add_slot(f.k, f.frame, f.gap, event.paused)
        for sid, fids in taken.cut.items():
            for fid in fids:
                d.windows[sid].drop(fid)
            d.sources[sid].stats.dropped += len(fids)
        for sid, n in taken.gated.items():
            d.sources[sid].stats.gated = n
        return taken

    def extract(self, batch: list[tuple[str, Captured]]) -> None:
        d = self.d
        t = time.perf_counter()
        feats = d.extractor.dequantize(d.extractor.extract(np.stack([c.image for _, c in batch])))
        if d.motion is not None:
            feats = d.head.inputs(feats, np.stack([d.motion.describe(*c.motion_pair) for _, c in batch]))
        seconds = time.perf_counter() - t
        d.load.busy(seconds, len(batch))
        if d.metrics is not None:
            d.metrics.stage.labels("extract").observe(seconds / len(batch))
        ready = time.monotonic()
        for (sid, frame), feature in zip(batch, feats, strict=True):
            frame.image = frame.motion_pair = None  # the feature is all that is kept
            d.sources[sid].stats.extracted += 1
            d.windows[sid].add_feature(frame.fid, feature, seconds * 1e3 / len(batch), ready)

    def publish_ready(self, sid: str) -> None:
        for result in self.d.windows[sid].windows():
            if isinstance(result, Ready) or result.reason == "idle":
                self.predict(sid, result)

    def predict(self, sid: str, w: Ready | Skipped) -> None:
        """The head on a complete window; an idle window (the gate found it still) is published as
        ``idle`` without it."""
        d = self.d
        probs, head_s = None, 0.0
        if isinstance(w, Ready):
            t = time.perf_counter()
            probs = d.head.predict(w.features)
            head_s = time.perf_counter() - t
            d.load.busy(head_s)
            if d.metrics is not None:
                d.metrics.stage.labels("head").observe(head_s)
        d.seq[sid] += 1
        d.sources[sid].stats.predictions += 1
        message = prediction(sid, d.seq[sid], w, probs, d.head.labels, d.source_cfg[sid], d.models, head_s * 1e3)
        d.post(d.publish_prediction, message, max(f.mono for f in w.frames), probs)

    def tick(self) -> None:
        """Measure cost and demand, and decide which live sources the extractor serves."""
        d = self.d
        now = time.monotonic()
        d.load.tick(
            now,
            {sid: src.stats.sampled for sid, src in d.sources.items()},
            {sid for sid in d.sources if not d.paused(sid)},
        )
        demand = {
            sid: d.load.demand.get(sid, 0.0)
            for sid, src in d.sources.items()
            if d.queue.feeds[sid].live and src.stats.state == "running"
        }
        d.admitted = d.admission.update(now, demand, d.load.cost_s)
        line = self.overload_log.update(now, d.admitted.overloaded, d.admitted.reason)
        if line is not None:
            getattr(log, line[0])(line[1])
        self.check_ended()

    def check_ended(self) -> None:
        """A file source that ended with nothing left to extract has published its last window:
        its open event ends."""
        d = self.d
        with d.cv:
            done = [
                sid
                for sid, src in d.sources.items()
                if sid not in self._ended and src.stats.state == "ended" and d.queue.drained(sid)
            ]
        for sid in done:
            self._ended.add(sid)
            d.post(d.stream_break, sid)
