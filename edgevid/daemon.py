"""``edgevid run``: sources -> sampled frames -> extractor (once per frame) -> feature ring -> head -> PUB.

Threads: one per source (blocking OpenCV reads) and one inference worker (the interpreters are not
thread-safe). The uvloop event loop owns the ZeroMQ socket, the status heartbeat, systemd
notifications and signals; the worker hands it finished predictions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from .config import DaemonConfig, SourceConfig
from .errors import ConfigError
from .extractor import Extractor
from .head import Head
from .messages import ModelIds, Prediction, PredictionLatency, SourceStatus, Status
from .pipeline import top_k
from .publish import STATUS_TOPIC, Publisher, prediction_topic
from .sources import FrameSource, SampledFrame

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


def hop_steps(cfg: SourceConfig, m: int) -> int:
    """Grid steps per hop; the hop must be a whole number of sampling intervals (window / M)."""
    steps = cfg.hop * m / cfg.window
    if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
        raise ConfigError(
            f"sources.{cfg.id}: hop {cfg.hop:g} s must be a multiple of window/M = {cfg.window / m:g} s (M = {m})"
        )
    return int(round(steps))


class Window:
    """The last M sampled frames' features of one source, keyed by grid index."""

    def __init__(self, m: int, hop: int) -> None:
        self.m = m
        self.hop = hop
        self.ring: deque[tuple[int, float, float | None, np.ndarray]] = deque(maxlen=2 * m)
        self.new_since = 0
        self.extract_ms = 0.0

    def add(self, k: int, wall: float, media: float | None, feature: np.ndarray, extract_ms: float) -> None:
        self.ring.append((k, wall, media, feature))
        self.new_since += 1
        self.extract_ms += extract_ms

    def due(self, k: int) -> bool:
        """A window ends at grid index k every ``hop`` steps once M instants exist."""
        return k + 1 >= self.m and (k + 1 - self.m) % self.hop == 0

    def take(self, k: int) -> tuple[np.ndarray, list] | None:
        """M features for instants k-M+1..k (a dropped instant reuses its nearest neighbour)."""
        wanted = np.arange(k - self.m + 1, k + 1)
        have = {entry[0]: entry for entry in self.ring if entry[0] >= wanted[0]}
        if len(have) < 0.8 * self.m:
            return None
        keys = np.array(sorted(have))
        chosen = [have[int(keys[np.abs(keys - w).argmin()])] for w in wanted]
        return np.stack([c[3] for c in chosen]), chosen


class Daemon:
    """Everything ``edgevid run`` holds; ``run()`` serves until SIGTERM/SIGINT."""

    def __init__(self, cfg: DaemonConfig) -> None:
        from .store import default_head_dir, extractor_path

        self.cfg = cfg
        threads = cfg.models.threads
        self.head = Head(cfg.models.head or default_head_dir(), num_threads=threads)
        path = cfg.models.extractor or extractor_path(self.head.manifest.extractor.name, cfg.models.dir)
        self.extractor = Extractor(Path(path), num_threads=threads)
        self.head.check_extractor(self.extractor.feature_dim, self.extractor.sha256, str(path))
        self.models = ModelIds(extractor=self.extractor.id, head=self.head.id)
        m = self.head.frames
        self.windows = {s.id: Window(m, hop_steps(s, m)) for s in cfg.sources}
        self.source_cfg = {s.id: s for s in cfg.sources}
        self.stop_event = threading.Event()
        self.queue: queue.Queue[SampledFrame] = queue.Queue(maxsize=max(8, 2 * max(w.hop for w in self.windows.values())))
        self.sources = {s.id: FrameSource(s, m, self._enqueue, self.stop_event) for s in cfg.sources}
        self.seq = {s.id: 0 for s in cfg.sources}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.publisher: Publisher | None = None
        self.started = time.monotonic()
        self.status_seq = 0
        self._rates: dict[str, tuple[float, int, int]] = {}
        self.worker_beat = time.monotonic()

    # -- capture side (source threads) ------------------------------------------------------
    def _enqueue(self, item: SampledFrame) -> None:
        """Newest frame wins: a live source never waits for inference; a file read as fast as
        possible waits instead (nothing to gain from dropping its frames)."""
        cfg = self.source_cfg[item.source]
        if cfg.resolved_kind() == "file" and not cfg.realtime:
            while not self.stop_event.is_set():
                try:
                    self.queue.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue
            return
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self.queue.get_nowait()
                    self.sources[old.source].stats.dropped += 1
                except queue.Empty:
                    pass

    # -- inference side (worker thread) -----------------------------------------------------
    def _work(self) -> None:
        while not self.stop_event.is_set():
            self.worker_beat = time.monotonic()
            try:
                first = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 16:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._infer(batch)
            except Exception:  # keep serving: one bad frame must not stop the daemon
                log.exception("inference failed on a batch of %d frames", len(batch))

    def _infer(self, batch: list[SampledFrame]) -> None:
        t = time.perf_counter()
        feats = self.extractor.dequantize(self.extractor.extract(self.extractor.preprocess([b.frame for b in batch])))
        per_frame_ms = (time.perf_counter() - t) * 1e3 / len(batch)
        for item, feature in zip(batch, feats, strict=True):
            window = self.windows[item.source]
            stats = self.sources[item.source].stats
            stats.processed += 1
            window.add(item.k, item.wall, item.media, feature, per_frame_ms)
            if not window.due(item.k):
                continue
            taken = window.take(item.k)
            if taken is None:
                stats.skipped_windows += 1
                continue
            x, chosen = taken
            t = time.perf_counter()
            probs = self.head.predict(x)
            head_ms = (time.perf_counter() - t) * 1e3
            self.seq[item.source] += 1
            stats.predictions += 1
            message = Prediction(
                source=item.source, seq=self.seq[item.source], window_start=chosen[0][1], window_end=chosen[-1][1],
                media_start=chosen[0][2], media_end=chosen[-1][2],
                top=top_k(probs, self.head.labels, self.source_cfg[item.source].top_k), models=self.models,
                new_frames=window.new_since,
                latency=PredictionLatency(extract_ms=round(window.extract_ms, 3), head_ms=round(head_ms, 3), capture_to_publish_ms=0.0),
            )
            window.new_since, window.extract_ms = 0, 0.0
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._publish_prediction, message, item.wall)

    # -- event loop side --------------------------------------------------------------------
    def _publish_prediction(self, message: Prediction, captured: float) -> None:
        message.latency.capture_to_publish_ms = round((time.time() - captured) * 1e3, 3)
        self.publisher.send(prediction_topic(message.source), message)

    def status(self) -> Status:
        now = time.monotonic()
        sources = []
        for sid, src in self.sources.items():
            s = src.stats
            t_prev, f_prev, p_prev = self._rates.get(sid, (self.started, 0, 0))
            dt = max(now - t_prev, 1e-6)
            sources.append(SourceStatus(
                id=sid, state=s.state, fps_in=round((s.frames_in - f_prev) / dt, 2), fps_processed=round((s.processed - p_prev) / dt, 2),
                frames_in=s.frames_in, sampled=s.sampled, dropped=s.dropped, reconnects=s.reconnects,
                predictions=s.predictions, skipped_windows=s.skipped_windows, last_error=s.last_error,
            ))
            self._rates[sid] = (now, s.frames_in, s.processed)
        self.status_seq += 1
        return Status(seq=self.status_seq, uptime_s=round(now - self.started, 3), sources=sources)

    async def _heartbeat(self) -> None:
        while True:
            status = self.status()
            self.publisher.send(STATUS_TOPIC, status)
            running = sum(s.state == "running" for s in status.sources)
            sd_notify(f"STATUS={running}/{len(status.sources)} sources running, {sum(s.predictions for s in status.sources)} predictions")
            await asyncio.sleep(self.cfg.publish.status_interval)

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog only while the inference worker is alive and looping: a hung
        worker (or event loop) gets the service restarted."""
        while True:
            if time.monotonic() - self.worker_beat < max(2.0, 2 * interval):
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        self.publisher = Publisher(self.cfg.publish)
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
        for task in tasks:
            task.cancel()
        worker.join(timeout=3)
        await asyncio.sleep(0)  # deliver predictions the worker handed over while draining
        self.publisher.send(STATUS_TOPIC, self.status())
        self.publisher.close()
        log.info("stopped")


def run_daemon(cfg: DaemonConfig) -> int:
    """Build the daemon (model errors surface here, before READY) and serve on uvloop if present."""
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    daemon = Daemon(cfg)
    try:
        import uvloop

        uvloop.run(daemon.serve())
    except ImportError:
        asyncio.run(daemon.serve())
    return 0
