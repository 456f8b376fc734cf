"""One source's thread: open it (its kind, :mod:`.kinds`), read it (:mod:`.reader`), and reopen it
with backoff when it fails, stalls or ends, until stopped. Its state and counters are what the
status heartbeat reports."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import cv2
import numpy as np

from ..config import SourceConfig, SourceTiming
from ..gate import MotionGate
from ..motion import MotionSpec
from ..timing import Backoff
from .base import SourceError, SourceStats
from .kinds import kind_of
from .reader import FrameReader

log = logging.getLogger("edgevid.sources")


class FrameSource(threading.Thread):
    """Reads one source until stopped, reconnecting with backoff; reports to ``sink``."""

    def __init__(
        self,
        cfg: SourceConfig,
        timing: SourceTiming,
        sink,
        stop: threading.Event,
        convert: Callable[[np.ndarray], np.ndarray],
        *,
        clock: Callable[[], float] = time.monotonic,
        motion_grey: Callable[[np.ndarray], np.ndarray] | None = None,
        snapshot=None,
        motion_spec: MotionSpec | None = None,
        ring=None,
    ) -> None:
        super().__init__(name=f"source-{cfg.id}", daemon=True)
        # OpenCV's own thread pool (process-wide) splits each small resize, colour conversion and
        # flow across a second thread that then spins: for a 320x240 frame that costs more CPU than
        # it saves, and the daemon already runs a thread per source beside the extractor.
        cv2.setNumThreads(1)
        self.cfg = cfg
        self.kind = kind_of(cfg)
        self.stop_event = stop
        self.stats = SourceStats()
        gate = MotionGate(cfg.gate.spec) if cfg.gate.enabled else None
        self.reader = FrameReader(
            cfg,
            timing,
            sink,
            self.stats,
            stop,
            convert,
            clock,
            motion_grey,
            self.kind.file,
            gate,
            snapshot,
            motion_spec=motion_spec,
        )
        self.reader.ring = ring  # [record]: the pre-roll ring (edgevid.record.FrameRing), else None

    @property
    def is_file(self) -> bool:
        return self.kind.file

    def _state(self, state: str, error: str | None = None) -> None:
        if error is not None:
            self.stats.last_error = error  # stays after recovery: it tells what the last reconnect was for
        if state != self.stats.state:
            how = f": {error}" if error else ""
            (log.warning if state in ("reconnecting", "failed") else log.info)(
                "source %s: %s -> %s%s", self.cfg.id, self.stats.state, state, how
            )
            self.stats.state = state

    def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min, self.cfg.reconnect_max)
        read = self.reader.read_file if self.kind.file else self.reader.read_live
        while not self.stop_event.is_set():
            try:
                opened = self.kind.open(self.cfg)
            except (SourceError, cv2.error) as exc:
                self._retry(backoff, str(exc).strip().splitlines()[-1] if str(exc).strip() else "cannot open")
                continue
            try:
                log.info(
                    "source %s: opened %s %s (%dx%d, %.3g fps, %s)",
                    self.cfg.id,
                    self.kind.name,
                    self.cfg.uri,
                    opened.width,
                    opened.height,
                    opened.fps,
                    opened.backend,
                )
                outcome = read(opened, lambda: self._state("running"))
            except SourceError as exc:
                self._state("failed", str(exc))
                return
            finally:
                opened.cap.release()
            if self.stop_event.is_set():
                return
            if outcome.frames:
                backoff.reset()
            if self.kind.file and outcome.ended and outcome.frames:
                if not self.cfg.loop:
                    log.info("source %s: end of file after %d frames", self.cfg.id, outcome.frames)
                    self._state("ended")
                    return
                self.stats.loop += 1
                log.info(
                    "source %s: end of file after %d frames, looping (pass %d)",
                    self.cfg.id,
                    outcome.frames,
                    self.stats.loop + 1,
                )
                continue
            self._retry(backoff, outcome.error or ("no frames in file" if self.kind.file else "stream ended"))

    def _retry(self, backoff: Backoff, error: str) -> None:
        self._state("reconnecting", error)
        self.stats.reconnects += 1
        delay = backoff.next()
        log.info("source %s: reconnect %d in %.1f s", self.cfg.id, self.stats.reconnects, delay)
        self.stop_event.wait(delay)
