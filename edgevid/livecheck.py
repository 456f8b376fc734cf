"""``edgevid classify`` on a camera or stream: the daemon's own sources and windows for N predictions.

A live source is read exactly as ``edgevid run`` reads it (reconnects, slot sampling, each frame
extracted once), so a quick check at the command line shows what the daemon would publish.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .config import DaemonConfig, ModelsConfig, PublishConfig, SourceConfig
from .daemon import Service, build, serve_forever
from .errors import EdgevidError
from .gate import GateConfig
from .messages import OutputStatus, Prediction


class Printer:
    """An output that hands the first ``wanted`` predictions (as published: latency filled in)
    to ``emit``, then stops the service."""

    name = "live"

    def __init__(self, wanted: int, emit: Callable[[Prediction], None], stop: Callable[[], None]) -> None:
        self.wanted, self.emit, self.stop = wanted, emit, stop
        self.got = 0

    def send(self, topic: str, message) -> None:
        if isinstance(message, Prediction) and self.got < self.wanted:
            self.got += 1
            self.emit(message)
            if self.got == self.wanted:
                self.stop()

    def status(self) -> OutputStatus:
        return OutputStatus(connected=True, sent=self.got, dropped=0, queued=0, reconnects=0)

    def close(self) -> None:
        pass


def live_check(
    uri: str,
    *,
    windows: int,
    timeout: float,
    top_k: int,
    head: Path | None,
    extractor: Path | None,
    model_dir: Path | None,
    threads: int,
    emit: Callable[[Prediction], None],
    gate: bool = True,
) -> int:
    """Predictions for the first ``windows`` windows of a live source; an error if they do not come
    within ``timeout`` seconds (with the source's last error, e.g. that it cannot be opened)."""
    cfg = DaemonConfig(
        sources=[SourceConfig(id="live", uri=uri, top_k=top_k, gate=GateConfig(enabled=gate))],
        publish=PublishConfig(endpoint="inproc://edgevid-classify"),  # nothing leaves the process
        models=ModelsConfig(dir=model_dir, extractor=extractor, head=head, threads=threads),
        log_level="warning",
    )
    daemon = build(cfg)
    service = Service(daemon)
    printer = Printer(windows, emit, service.stop.set)
    daemon.outputs.append(printer)
    serve_forever(service, timeout)
    if printer.got < windows:
        stats = daemon.sources["live"].stats
        why = stats.last_error or f"{stats.frames_in} frames read"
        raise EdgevidError(f"{uri}: {printer.got} of {windows} windows within {timeout:g} s ({why})")
    return 0
