"""``edgevid run``: sources -> sampled frames -> extractor (once per frame) -> feature ring -> head -> PUB.

Threads: one per source (blocking OpenCV reads) and one inference worker (the interpreters are not
thread-safe). The uvloop event loop owns the ZeroMQ socket, the status heartbeat, systemd
notifications and signals; the worker hands it finished predictions.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DaemonConfig, load_config, source_timing
from .errors import EdgevidError
from .events import SourceEvents
from .extractor import preprocess
from .motion import MotionEstimator
from .head import Head
from .messages import UNKNOWN, Event, ModelIds, Prediction, PredictionLatency, SourceStatus, Status
from .pipeline import ClipClassifier, load_classifier, top_k
from .publish import STATUS_TOPIC, Publisher, event_topic, prediction_topic
from .scheduler import Admission
from .sources import Captured, FrameSource, source_problem
from .timing import Fill, Liveness
from .windows import Ready, WindowAssembler

log = logging.getLogger("edgevid.daemon")


def sd_notify(state: str) -> bool:
    """Tell systemd (Type=notify) about readiness, watchdog pings and status; no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), address)
        return True
    except OSError:
        return False


#: A live frame waiting longer than this for the extractor is dropped with every frame of its
#: source queued before it (one clean cut instead of holes in many windows).
MAX_LAG_S = 1.0
#: Frames a non-realtime file may queue before its reader waits (it is never dropped).
FILE_QUEUE = 16
#: Frames per extractor invoke: enough to amortize the call, small enough to keep latency low.
BATCH = 8
#: The inference worker beats at least every 0.2 s (its idle wait); quiet longer than this, it hangs.
WORKER_GRACE_S = 5.0
#: Seconds between overload decisions, and between repeated overload log lines.
TICK_S, OVERLOAD_LOG_S = 0.5, 60.0


def _window_of(head: Head) -> float | None:
    return head.manifest.timescale.window_s if head.manifest.timescale else None


@dataclass
class _Job:
    source: str
    frame: Captured


class _Feed:
    """What one source has handed over and the inference worker has not yet taken."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.events: list[tuple] = []
        self.pending: deque[Captured] = deque()
        self.demand = 0.0  # distinct frames per second it needs extracted (measured)
        self.sampled_mark = 0


class Daemon:
    """Everything ``edgevid run`` holds; ``run()`` serves until SIGTERM/SIGINT."""

    def __init__(self, cfg: DaemonConfig, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.reload = False  # set by SIGHUP with a config that passed preflight: exec anew after stopping
        classifier, problems = preflight(cfg)
        for problem in problems:
            log.warning("%s (retrying with backoff until it opens)", problem)
        self.head, self.extractor = classifier.head, classifier.extractor
        path = self.extractor.path
        self.models = ModelIds(extractor=self.extractor.id, head=self.head.id)
        log.info("models: head %s (%s, M = %d, trained window %s s), extractor %s (%s)", self.head.manifest.name, self.head.id,
                 self.head.frames, _window_of(self.head), Path(path).name, self.extractor.id)
        m, head_window = self.head.frames, _window_of(self.head)
        self.timing = {s.id: source_timing(s, m, head_window) for s in cfg.sources}
        for s in cfg.sources:
            t = self.timing[s.id]
            warning = t.warning(s.id)
            if warning:
                log.warning(warning)
            log.info("source %s: window %.3g s, %d slots every %.3g s, a prediction every %d slots (%.3g s)",
                     s.id, t.window, t.m, t.dt, t.hop, t.hop_s)
        self.source_cfg = {s.id: s for s in cfg.sources}
        self.stop_event = threading.Event()
        self.cv = threading.Condition()
        self.feeds = {s.id: _Feed(live=not (s.resolved_kind() == "file" and not s.realtime)) for s in cfg.sources}
        self.windows = {s.id: WindowAssembler(m, self.timing[s.id].hop) for s in cfg.sources}
        self.admission = Admission([s.id for s in cfg.sources if self.feeds[s.id].live])
        self.admitted = self.admission.state
        size = self.extractor.input_size
        # A head reading the motion stream: sources keep each frame's small grey image, the worker
        # turns (previous, sampled) pairs into descriptors beside the extractor's features.
        self.motion = MotionEstimator(self.head.motion) if self.head.motion is not None else None
        grey = self.motion.grey if self.motion is not None else None
        self.sources = {s.id: FrameSource(s, self.timing[s.id], self, self.stop_event, lambda f: preprocess(f, size), motion_grey=grey)
                        for s in cfg.sources}
        self.seq = {s.id: 0 for s in cfg.sources}
        self.events = SourceEvents(cfg.sources, self.head.labels)  # fed on the event loop, in prediction order
        self._ended: set[str] = set()  # ended file sources whose last window was handed to the loop
        self.metrics = None  # opt-in Prometheus endpoint, started in serve()
        self.outputs: list = []  # optional outputs (MQTT) beside ZeroMQ, started in serve()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.publisher: Publisher | None = None
        self.started = time.monotonic()
        self.status_seq = 0
        self._rates: dict[str, tuple[float, int, int]] = {}
        self.worker = Liveness(WORKER_GRACE_S, time.monotonic())
        self.cost_s: float | None = None  # extractor (+ head) seconds per frame, measured
        self._busy = [0.0, 0]  # seconds and frames since the last tick
        self._overload_logged = -math.inf
        self._tick_at = time.monotonic()

    # -- capture side (source threads): the Sink protocol ---------------------------------------
    def segment(self, source: str) -> None:
        with self.cv:
            feed = self.feeds[source]
            feed.pending.clear()  # frames of the stretch that just ended: no window will use them
            feed.events.append(("segment",))
            self.cv.notify_all()

    def fills(self, source: str, fills: list[Fill[Captured]], new: list[Captured], paused: bool) -> None:
        feed = self.feeds[source]
        with self.cv:
            if not paused:
                feed.pending.extend(new)
            feed.events.append(("fills", fills, paused))
            self.cv.notify_all()
            # A file read as fast as inference allows waits for the worker instead of losing frames.
            while not feed.live and len(feed.pending) >= FILE_QUEUE and not self.stop_event.is_set():
                self.cv.wait(0.2)

    def paused(self, source: str) -> bool:
        return self.admitted.overloaded and source not in self.admitted.admitted

    # -- inference side (worker thread) -----------------------------------------------------
    def _work(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self.stop_event.is_set():
            self.worker.beat(time.monotonic())
            try:
                batch, touched = self._take()
                if batch:
                    self._extract(batch)
                for sid in touched | {c.source for c in batch}:
                    self._publish_ready(sid)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    self._tick()
            except Exception:  # keep serving: one bad frame must not stop the daemon
                log.exception("inference failed")

    def _take(self) -> tuple[list["_Job"], set[str]]:
        """Under the lock: apply what the sources handed over, then pick the next batch (live
        sources' oldest frames first, then files) and cut live backlogs older than MAX_LAG_S."""
        with self.cv:
            if not any(f.events or f.pending for f in self.feeds.values()):
                self.cv.wait(0.2)
            touched = set()
            for sid, feed in self.feeds.items():
                if not feed.events:
                    continue
                touched.add(sid)
                win = self.windows[sid]
                for event in feed.events:
                    if event[0] == "segment":
                        win.reset()
                        if self.loop is not None:  # a new stretch: open events end (in order with the predictions)
                            self.loop.call_soon_threadsafe(self._stream_break, sid)
                        continue
                    _, fills, paused = event
                    for f in fills:
                        win.add_slot(f.k, f.frame, f.gap, paused)
                feed.events = []
            now = time.monotonic()
            for sid, feed in self.feeds.items():
                if feed.live and feed.pending and now - feed.pending[0].mono > MAX_LAG_S:
                    stats = self.sources[sid].stats
                    while feed.pending:
                        self.windows[sid].drop(feed.pending.popleft().fid)
                        stats.dropped += 1
                    touched.add(sid)
            batch: list[_Job] = []
            live = [(f.pending[0].mono, sid) for sid, f in self.feeds.items() if f.live and f.pending]
            heapq.heapify(live)  # the oldest live frame first, whichever source it is from
            while live and len(batch) < BATCH:
                _, sid = heapq.heappop(live)
                feed = self.feeds[sid]
                batch.append(_Job(sid, feed.pending.popleft()))
                if feed.pending:
                    heapq.heappush(live, (feed.pending[0].mono, sid))
            files = deque(sid for sid, f in self.feeds.items() if not f.live and f.pending)
            while files and len(batch) < BATCH:  # then files, one frame each in turn
                sid = files.popleft()
                feed = self.feeds[sid]
                batch.append(_Job(sid, feed.pending.popleft()))
                if feed.pending:
                    files.append(sid)
            if batch:
                self.cv.notify_all()  # room for blocked file readers
            return batch, touched

    def _extract(self, batch: list["_Job"]) -> None:
        t = time.perf_counter()
        feats = self.extractor.dequantize(self.extractor.extract(np.stack([j.frame.image for j in batch])))
        if self.motion is not None:
            motion = np.stack([self.motion.describe(*j.frame.motion_pair) for j in batch])
            feats = self.head.inputs(feats, motion)
        seconds = time.perf_counter() - t
        self._busy[0] += seconds
        self._busy[1] += len(batch)
        if self.metrics is not None:
            self.metrics.stage.labels("extract").observe(seconds / len(batch))
        ready = time.monotonic()
        for job, feature in zip(batch, feats, strict=True):
            job.frame.image = job.frame.motion_pair = None  # the feature is all that is kept
            self.sources[job.source].stats.extracted += 1
            self.windows[job.source].add_feature(job.frame.fid, feature, seconds * 1e3 / len(batch), ready)

    def _publish_ready(self, sid: str) -> None:
        for result in self.windows[sid].windows():
            if isinstance(result, Ready):
                self._predict(sid, result)

    def _predict(self, sid: str, w: Ready) -> None:
        t = time.perf_counter()
        probs = self.head.predict(w.features)
        head_s = time.perf_counter() - t
        self._busy[0] += head_s
        if self.metrics is not None:
            self.metrics.stage.labels("head").observe(head_s)
        self.seq[sid] += 1
        self.sources[sid].stats.predictions += 1
        first, last = w.frames[0], w.frames[-1]
        best = int(np.argmax(probs))
        known = float(probs[best]) >= self.source_cfg[sid].min_score
        message = Prediction(
            source=sid, seq=self.seq[sid], label=self.head.labels[best] if known else UNKNOWN, score=round(float(probs[best]), 6),
            window_start=first.wall, window_end=last.wall,
            media_start=first.media, media_end=last.media, loop=last.loop,
            top=top_k(probs, self.head.labels, self.source_cfg[sid].top_k), models=self.models,
            frames=len({f.fid for f in w.frames}), gaps=w.gaps, new_frames=w.new_frames,
            latency=PredictionLatency(extract_ms=round(w.extract_ms, 3), head_ms=round(head_s * 1e3, 3),
                                      floor_ms=round(w.pending_ms + head_s * 1e3, 3), capture_to_publish_ms=0.0),
        )
        newest = max(f.mono for f in w.frames)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._publish_prediction, message, newest, probs)

    def _tick(self) -> None:
        """Measure cost and demand, and decide which live sources the extractor serves."""
        now = time.monotonic()
        elapsed, self._tick_at = max(now - self._tick_at, 1e-3), now
        seconds, frames = self._busy
        if frames:
            cost = seconds / frames
            self.cost_s = cost if self.cost_s is None else 0.7 * self.cost_s + 0.3 * cost
        self._busy = [0.0, 0]
        demand = {}
        for sid, feed in self.feeds.items():
            src = self.sources[sid]
            rate = (src.stats.sampled - feed.sampled_mark) / elapsed
            feed.sampled_mark = src.stats.sampled
            if not self.paused(sid):
                feed.demand = rate if feed.demand == 0 else 0.7 * feed.demand + 0.3 * rate
            if feed.live and src.stats.state == "running":
                demand[sid] = feed.demand
        was = self.admitted
        self.admitted = self.admission.update(time.monotonic(), demand, self.cost_s)
        now = time.monotonic()
        if self.admitted.overloaded and (not was.overloaded or now - self._overload_logged >= OVERLOAD_LOG_S):
            log.warning("overloaded: %s", self.admitted.reason)
            self._overload_logged = now
        elif was.overloaded and not self.admitted.overloaded:
            log.info("overload over: serving every source")
            self._overload_logged = -math.inf
        self._check_ended()

    def _check_ended(self) -> None:
        """A file source that ended with nothing left to extract has published its last window:
        its open event ends."""
        with self.cv:
            done = [sid for sid, src in self.sources.items() if sid not in self._ended and src.stats.state == "ended"
                    and not self.feeds[sid].events and not self.feeds[sid].pending]
        for sid in done:
            self._ended.add(sid)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._stream_break, sid)

    # -- event loop side --------------------------------------------------------------------
    def _publish_prediction(self, message: Prediction, captured_mono: float, probs: np.ndarray) -> None:
        message.latency.capture_to_publish_ms = round((time.monotonic() - captured_mono) * 1e3, 3)
        if self.metrics is not None:
            self.metrics.latency.labels(message.source).observe(message.latency.capture_to_publish_ms / 1e3)
        self._emit(prediction_topic(message.source), message)
        for event in self.events.prediction(message, probs):
            self._emit(event_topic(event.source), event)

    def _stream_break(self, sid: str | None) -> None:
        for event in self.events.reset(sid):
            self._emit(event_topic(event.source), event)

    def _emit(self, topic: str, message) -> None:
        """Every message goes to the ZeroMQ publisher (the primary bus), then to the optional
        outputs, which queue without blocking."""
        self.publisher.send(topic, message)
        for out in self.outputs:
            out.send(topic, message)
        if self.metrics is not None and isinstance(message, Event):
            self.metrics.events.labels(message.source, message.phase).inc()

    def status(self, peek: bool = False) -> Status:
        """The heartbeat's status; ``peek`` (a metrics scrape): the same counters without starting
        a new rate interval or taking a sequence number."""
        now = time.monotonic()
        sources = []
        for sid, src in self.sources.items():
            s = src.stats
            t_prev, f_prev, p_prev = self._rates.get(sid, (self.started, 0, 0))
            dt = max(now - t_prev, 1e-6)
            skipped = dict(self.windows[sid].skipped)
            timing = self.timing[sid]
            state = "paused" if s.state == "running" and self.paused(sid) else s.state
            sources.append(SourceStatus(
                id=sid, state=state, window_s=round(timing.window, 4), hop_s=round(timing.hop_s, 4),
                fps_in=round((s.frames_in - f_prev) / dt, 2), fps_processed=round((s.extracted - p_prev) / dt, 2),
                frames_in=s.frames_in, sampled=s.sampled, extracted=s.extracted, dropped=s.dropped, reconnects=s.reconnects,
                predictions=s.predictions, skipped_windows=sum(skipped.values()), skipped=skipped,
                loop=s.loop if src.kind == "file" else None, last_error=s.last_error,
            ))
            if not peek:
                self._rates[sid] = (now, s.frames_in, s.extracted)
        self.status_seq += 0 if peek else 1
        cost = None if self.cost_s is None else round(self.cost_s * 1e3, 3)
        return Status(seq=self.status_seq, uptime_s=round(now - self.started, 3), overloaded=self.admitted.overloaded,
                      overload=self.admitted.reason, extract_ms_per_frame=cost, sources=sources,
                      outputs={o.name: o.status() for o in self.outputs})

    async def _heartbeat(self) -> None:
        while True:
            status = self.status()
            self._emit(STATUS_TOPIC, status)
            running = sum(s.state == "running" for s in status.sources)
            sd_notify(f"STATUS={running}/{len(status.sources)} sources running, {sum(s.predictions for s in status.sources)} predictions")
            await asyncio.sleep(self.cfg.publish.status_interval)

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog only while the inference worker is alive and looping: a hung
        worker (or event loop) gets the service restarted."""
        while True:
            if self.worker.alive(time.monotonic()):
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _hangup(self, stop: asyncio.Event) -> None:
        """SIGHUP reloads: a config (and models) that pass preflight replace the running ones by a
        clean stop and an exec in place (same PID for systemd); a bad one is refused and logged."""
        if self.config_path is None:
            log.warning("SIGHUP: no config file to reload; still serving")
            return
        try:
            preflight(load_config(self.config_path))
        except EdgevidError as exc:
            log.error("SIGHUP: %s; not reloaded, still serving the running config", exc)
            return
        log.info("SIGHUP: reloading %s", self.config_path)
        sd_notify("RELOADING=1")
        self.reload = True
        stop.set()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        self.loop.add_signal_handler(signal.SIGHUP, self._hangup, stop)
        self.publisher = Publisher(self.cfg.publish)
        if self.cfg.metrics.listen:
            from .metrics import Metrics

            self.metrics = Metrics(self.cfg.metrics.listen, lambda: self.status(peek=True))
        if self.cfg.mqtt is not None:
            from .mqtt import MqttOutput

            self.outputs.append(MqttOutput(self.cfg.mqtt, list(self.sources), self.head.labels, self.head.manifest.name))
        worker = threading.Thread(target=self._work, name="inference", daemon=True)
        worker.start()
        for src in self.sources.values():
            src.start()
        heartbeat = asyncio.create_task(self._heartbeat())
        tasks = [heartbeat]
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if watchdog_usec > 0:
            tasks.append(asyncio.create_task(self._watchdog(watchdog_usec / 2e6)))
        log.info("serving %d source(s) on %s", len(self.sources), self.cfg.publish.endpoint)
        sd_notify("READY=1")
        await stop.wait()
        log.info("stopping")
        sd_notify("STOPPING=1")
        self.stop_event.set()
        with self.cv:
            self.cv.notify_all()  # file readers waiting for room
        for task in tasks:
            task.cancel()
        worker.join(timeout=3)
        # Readers stop at their next frame or wait; one blocked in a network read ends by its
        # read timeout. Their captures are released before the interpreter goes away.
        deadline = time.monotonic() + min(8.0, max(s.read_timeout for s in self.cfg.sources) + 1.0)
        for src in self.sources.values():
            src.join(timeout=max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0)  # deliver predictions the worker handed over while draining
        self._stream_break(None)  # open events end with the daemon
        self._emit(STATUS_TOPIC, self.status())
        for out in self.outputs:
            out.close()
        if self.metrics is not None:
            self.metrics.close()
        self.publisher.close()
        log.info("stopped")


def preflight(cfg: DaemonConfig) -> tuple[ClipClassifier, list[str]]:
    """What ``run`` checks before serving, without serving: the models load and fit (else an
    EdgevidError), and each source's problem that can be seen without opening it."""
    classifier = load_classifier(cfg.models.head, cfg.models.extractor, cfg.models.dir, cfg.models.threads)
    if cfg.metrics.listen:
        from .metrics import require_client

        require_client()
    if cfg.mqtt is not None:
        from .mqtt import check

        check(cfg.mqtt, classifier.head.labels)
    problems = [f"sources.{s.id}: {p}" for s in cfg.sources if (p := source_problem(s))]
    return classifier, problems


def run_daemon(cfg: DaemonConfig, config_path: Path | None = None) -> int:
    """Build the daemon (model errors surface here, before READY) and serve on uvloop if present.
    After a SIGHUP reload the process execs itself with the same arguments."""
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    daemon = Daemon(cfg, config_path)
    try:
        import uvloop

        uvloop.run(daemon.serve())
    except ImportError:
        asyncio.run(daemon.serve())
    stuck = [t.name for t in daemon.sources.values() if t.is_alive()]
    if stuck:
        # A thread still inside OpenCV would abort the interpreter's teardown (SIGABRT, counted as
        # a failure by systemd). Everything is published and closed: leave without the teardown.
        log.warning("leaving %s blocked in a read", ", ".join(stuck))
        if not daemon.reload:
            logging.shutdown()
            os._exit(0)
    if daemon.reload:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0
