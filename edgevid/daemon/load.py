"""How loaded the extractor is: its cost per frame and each live source's demand, measured as
moving averages, and the throttled overload log. Plain classes a test drives with its own clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Seconds between overload decisions, and between repeated overload log lines.
TICK_S, OVERLOAD_LOG_S = 0.5, 60.0
#: Weight of the newest measurement in the moving averages.
ALPHA = 0.3


def ema(old: float | None, new: float) -> float:
    """Exponential moving average; the first measurement is taken as it is."""
    return new if old is None else (1 - ALPHA) * old + ALPHA * new


class LoadMeter:
    """Extractor (+ head) seconds per frame, and sampled frames per second per source."""

    def __init__(self, now: float) -> None:
        self.cost_s: float | None = None
        self.demand: dict[str, float] = {}
        self._busy_s, self._frames = 0.0, 0
        self._marks: dict[str, int] = {}
        self._at = now

    def busy(self, seconds: float, frames: int = 0) -> None:
        """The worker spent ``seconds`` on ``frames`` extractions (frames 0: head time)."""
        self._busy_s += seconds
        self._frames += frames

    def tick(self, now: float, sampled: dict[str, int], measured: set[str]) -> None:
        """Fold in the interval since the last tick. ``sampled``: each source's sampled-frame
        counter; ``measured``: the sources whose rate counts now (a paused source's does not)."""
        elapsed, self._at = max(now - self._at, 1e-3), now
        if self._frames:
            self.cost_s = ema(self.cost_s, self._busy_s / self._frames)
        self._busy_s, self._frames = 0.0, 0
        for sid, count in sampled.items():
            rate = (count - self._marks.get(sid, 0)) / elapsed
            self._marks[sid] = count
            if sid in measured:
                old = self.demand.get(sid, 0.0)
                self.demand[sid] = rate if old == 0 else ema(old, rate)


@dataclass
class OverloadLog:
    """One warning when overload starts and at most one a ``every`` seconds while it lasts; one
    line when it ends."""

    every: float = OVERLOAD_LOG_S
    _last: float = -math.inf
    _was: bool = False

    def update(self, now: float, overloaded: bool, reason: str | None) -> tuple[str, str] | None:
        """(level, text) to log now, or None."""
        was, self._was = self._was, overloaded
        if overloaded and (not was or now - self._last >= self.every):
            self._last = now
            return "warning", f"overloaded: {reason}"
        if was and not overloaded:
            self._last = -math.inf
            return "info", "overload over: serving every source"
        return None
