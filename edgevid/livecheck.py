"""``edgevid classify`` on a camera or stream: the daemon's own sources and windows for N predictions.

A live source is read exactly as ``edgevid run`` reads it (reconnects, slot sampling, each frame
extracted once), so a quick check at the command line shows what the daemon would publish.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Callable

from .config import DaemonConfig, ModelsConfig, PublishConfig, SourceConfig
from .daemon import Daemon
from .errors import EdgevidError
from .messages import Prediction


class LiveCheck(Daemon):
    """The daemon with one source, printing its first ``windows`` predictions instead of serving forever."""

    def __init__(self, cfg: DaemonConfig, windows: int, timeout: float, emit: Callable[[Prediction], None]) -> None:
        super().__init__(cfg)
        self.wanted, self.timeout, self.emit = windows, timeout, emit
        self.got = 0

    def _publish_prediction(self, message: Prediction, *rest) -> None:
        super()._publish_prediction(message, *rest)  # as the daemon publishes it (latency filled in, events)
        if self.got < self.wanted:
            self.got += 1
            self.emit(message)
            if self.got == self.wanted:
                signal.raise_signal(signal.SIGINT)  # serve() stops as on Ctrl-C

    async def serve(self) -> None:
        asyncio.get_running_loop().call_later(self.timeout, signal.raise_signal, signal.SIGINT)
        await super().serve()


def live_check(uri: str, *, windows: int, timeout: float, top_k: int, head: Path | None, extractor: Path | None,
               model_dir: Path | None, threads: int, emit: Callable[[Prediction], None]) -> int:
    """Predictions for the first ``windows`` windows of a live source; an error if they do not come
    within ``timeout`` seconds (with the source's last error, e.g. that it cannot be opened)."""
    cfg = DaemonConfig(
        sources=[SourceConfig(id="live", uri=uri, top_k=top_k)],
        publish=PublishConfig(endpoint="inproc://edgevid-classify"),  # nothing leaves the process
        models=ModelsConfig(dir=model_dir, extractor=extractor, head=head, threads=threads),
        log_level="warning",
    )
    check = LiveCheck(cfg, windows, timeout, emit)
    try:
        import uvloop

        uvloop.run(check.serve())
    except ImportError:
        asyncio.run(check.serve())
    if check.got < windows:
        stats = check.sources["live"].stats
        why = stats.last_error or f"{stats.frames_in} frames read"
        raise EdgevidError(f"{uri}: {check.got} of {windows} windows within {timeout:g} s ({why})")
    return 0
