"""``edgevid run``: sources -> sampled frames -> extractor (once per frame) -> windows -> head -> outputs.

Threads: one per source (blocking reads), one inference worker (the interpreters are not
thread-safe). The asyncio loop owns the outputs, the heartbeat, systemd and signals; the worker
posts finished predictions to it.

- :mod:`.feed`: the hand-over queue and which frames the worker takes next (lag cut, batches);
- :mod:`.load`: cost and demand measured, the overload log;
- :mod:`.predict`: a complete window -> the prediction message;
- :mod:`.status`: rates and each source's status;
- :mod:`.core`: the daemon's state, the sources' Sink side, messages to the outputs;
- :mod:`.worker`: the inference loop; :mod:`.service`: outputs, signals, systemd, reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from ..config import DaemonConfig
from ..hangup import HANGUPS, close_on_exec
from .core import Daemon
from .service import Service, preflight, sd_notify

__all__ = ["Daemon", "Service", "build", "preflight", "run_daemon", "sd_notify", "serve_forever"]

log = logging.getLogger("edgevid.daemon")


def build(cfg: DaemonConfig, config_path: Path | None = None) -> Daemon:
    """Preflight (model errors surface here, before READY), then the daemon; problems a source can
    recover from are logged and retried."""
    classifier, problems = preflight(cfg)
    for problem in problems:
        log.warning("%s (retrying with backoff until it opens)", problem)
    return Daemon(cfg, classifier, config_path)


def serve_forever(service: Service, timeout: float | None = None) -> None:
    """The service on uvloop if it is installed, else asyncio's own loop."""
    try:
        import uvloop

        uvloop.run(service.serve(timeout))
    except ImportError:
        asyncio.run(service.serve(timeout))


def run_daemon(cfg: DaemonConfig, config_path: Path | None = None) -> int:
    """Serve until stopped. After a SIGHUP reload the process execs itself with the same arguments."""
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    daemon = build(cfg, config_path)
    service = Service(daemon)
    serve_forever(service)
    stuck = [t.name for t in daemon.sources.values() if t.is_alive()]
    if stuck:
        # A thread still inside OpenCV would abort the interpreter's teardown (SIGABRT, counted as
        # a failure by systemd). Everything is published and closed: leave without the teardown.
        log.warning("leaving %s blocked in a read", ", ".join(stuck))
        if not service.reload:
            logging.shutdown()
            os._exit(0)
    if service.reload:
        HANGUPS.block()  # one more SIGHUP from here on is delivered to the new process
        log.debug("reload: %d inherited descriptor(s) marked close-on-exec", close_on_exec())
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0
