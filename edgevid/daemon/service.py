"""The daemon as a service: outputs up, threads started, systemd told, signals handled (SIGTERM
and SIGINT stop, SIGHUP reloads by exec in place), and everything closed in order."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time

from ..config import DaemonConfig, load_config
from ..errors import EdgevidError
from ..hangup import HANGUPS, RELOADING, SERVING, STOPPING, Hangups
from ..outputs import STATUS_TOPIC, Context, check_outputs, open_outputs
from ..pipeline import ClipClassifier, load_classifier
from ..sources.kinds import source_problem
from .core import Daemon
from .worker import Worker

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


def preflight(cfg: DaemonConfig) -> tuple[ClipClassifier, list[str]]:
    """What ``run`` checks before serving, without serving: the models load and fit and the
    outputs can start (else an EdgevidError), and each source's problem that can be seen without
    opening it."""
    classifier = load_classifier(cfg.models.head, cfg.models.extractor, cfg.models.dir, cfg.models.threads)
    check_outputs(cfg, classifier.head.labels)
    problems = [f"sources.{s.id}: {p}" for s in cfg.sources if (p := source_problem(s))]
    return classifier, problems


def start_outputs(d: Daemon) -> None:
    ctx = Context(
        sources=list(d.sources),
        labels=d.head.labels,
        model=d.head.manifest.name,
        status=lambda: d.status(peek=True),
        hop_s={sid: t.hop_s for sid, t in d.timing.items()},
        min_score={sid: s.min_score for sid, s in d.source_cfg.items()},
        head_dir=d.head.folder,
        manifest=d.head.manifest.model_dump(mode="json"),
        snapshots=d.snapshots,
        recorder=d.recorder,
    )
    d.outputs = open_outputs(d.cfg, ctx) + d.outputs  # outputs added before serving (the live check) come after
    d.metrics = next((o for o in d.outputs if o.name == "metrics"), None)


class Service:
    """Runs a :class:`Daemon` until stopped; ``reload`` is set when SIGHUP asked for an exec.
    ``hangups`` decides what each SIGHUP does (:mod:`edgevid.hangup`)."""

    def __init__(self, daemon: Daemon, hangups: Hangups = HANGUPS) -> None:
        self.d = daemon
        self.reload = False
        self.stop = asyncio.Event()
        self.hangups = hangups

    async def _heartbeat(self) -> None:
        while True:
            status = self.d.status()
            self.d.emit(STATUS_TOPIC, status)
            running = sum(s.state == "running" for s in status.sources)
            sd_notify(
                f"STATUS={running}/{len(status.sources)} sources running, "
                f"{sum(s.predictions for s in status.sources)} predictions"
            )
            await asyncio.sleep(self.d.cfg.publish.status_interval)

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog only while the inference worker is alive and looping: a hung
        worker (or event loop) gets the service restarted."""
        while True:
            if self.d.worker.alive(time.monotonic()):
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _hangup(self) -> None:
        """SIGHUP reloads: a config (and models) that pass preflight replace the running ones by a
        clean stop and an exec in place (same PID for systemd); a bad one is refused and logged.
        One that came while starting is acted on here once serving; while a reload or a stop is
        under way it is logged and left (:meth:`Hangups.action`)."""
        h = self.hangups
        action = h.action()
        if action == "covered":
            log.info("SIGHUP: a reload is already under way; the new process reads the config")
        elif action == "ignore":
            log.info("SIGHUP: stopping; not reloaded")
        if action != "reload":
            return
        token = h.reading()
        path = self.d.config_path
        if path is None:
            h.read(token)
            log.warning("SIGHUP: no config file to reload; still serving")
            return
        try:
            preflight(load_config(path))
        except EdgevidError as exc:
            h.read(token)
            log.error("SIGHUP: %s; not reloaded, still serving the running config", exc)
            return
        log.info("SIGHUP: reloading %s", path)
        h.phase = RELOADING
        sd_notify("RELOADING=1")
        self.reload = True
        self.stop.set()

    async def serve(self, timeout: float | None = None) -> None:
        """Serve until SIGTERM/SIGINT, :attr:`stop`, or ``timeout`` seconds."""
        d = self.d
        d.loop = loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        h = self.hangups
        if signal.getsignal(signal.SIGHUP) != h.handler and threading.current_thread() is threading.main_thread():
            h.install()  # not through `edgevid run` (which installs it before reading the config)
        h.wake = lambda: loop.call_soon_threadsafe(self._hangup)
        try:
            await self._serve(timeout)
        finally:
            h.wake = None

    async def _serve(self, timeout: float | None) -> None:
        d = self.d
        loop = d.loop
        if timeout is not None:
            loop.call_later(timeout, self.stop.set)
        start_outputs(d)
        worker = threading.Thread(target=Worker(d).run, name="inference", daemon=True)
        worker.start()
        for src in d.sources.values():
            src.start()
        tasks = [asyncio.create_task(self._heartbeat())]
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if watchdog_usec > 0:
            tasks.append(asyncio.create_task(self._watchdog(watchdog_usec / 2e6)))
        log.info("serving %d source(s) on %s", len(d.sources), d.cfg.publish.endpoint)
        sd_notify("READY=1")
        if not self.stop.is_set():
            self.hangups.phase = SERVING
            if self.hangups.action() == "reload":
                log.info("SIGHUP came while starting, after the config was read: reloading now")
                self._hangup()
        await self.stop.wait()
        log.info("stopping")
        if not self.reload:  # a reload told systemd RELOADING=1; the new process says READY=1
            self.hangups.phase = STOPPING
            sd_notify("STOPPING=1")
        d.stop_event.set()
        with d.cv:
            d.cv.notify_all()  # file readers waiting for room
        for task in tasks:
            task.cancel()
        worker.join(timeout=3)
        # Readers stop at their next frame or wait; one blocked in a network read ends by its
        # read timeout. Their captures are released before the interpreter goes away.
        deadline = time.monotonic() + min(8.0, max(s.read_timeout for s in d.cfg.sources) + 1.0)
        for src in d.sources.values():
            src.join(timeout=max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0)  # deliver predictions the worker handed over while draining
        d.stream_break(None)  # open events end with the daemon
        d.emit(STATUS_TOPIC, d.status())
        for out in reversed(d.outputs):
            out.close()
            if (wait_closed := getattr(out, "wait_closed", None)) is not None:
                await wait_closed()
        log.info("stopped")
