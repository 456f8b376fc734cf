"""The heartbeat's numbers: per-source rates since the last heartbeat, and each source's status."""

from __future__ import annotations

from ..config import SourceTiming
from ..messages import SourceStatus
from ..sources.base import SourceStats


class Rates:
    """Frames in and frames extracted per second since the last heartbeat. A metrics scrape peeks:
    it sees the same interval without starting a new one."""

    def __init__(self, started: float) -> None:
        self.started = started
        self._marks: dict[str, tuple[float, int, int]] = {}

    def of(self, sid: str, now: float, frames_in: int, extracted: int, peek: bool = False) -> tuple[float, float]:
        t_prev, f_prev, p_prev = self._marks.get(sid, (self.started, 0, 0))
        dt = max(now - t_prev, 1e-6)
        if not peek:
            self._marks[sid] = (now, frames_in, extracted)
        return round((frames_in - f_prev) / dt, 2), round((extracted - p_prev) / dt, 2)


def source_status(
    sid: str,
    stats: SourceStats,
    timing: SourceTiming,
    skipped: dict[str, int],
    paused: bool,
    rates: tuple[float, float],
    is_file: bool,
) -> SourceStatus:
    """One source's status: its counters, and ``paused`` while overload keeps it from the extractor."""
    state = "paused" if stats.state == "running" and paused else stats.state
    return SourceStatus(
        id=sid,
        state=state,
        window_s=round(timing.window, 4),
        hop_s=round(timing.hop_s, 4),
        fps_in=rates[0],
        fps_processed=rates[1],
        frames_in=stats.frames_in,
        sampled=stats.sampled,
        extracted=stats.extracted,
        dropped=stats.dropped,
        reconnects=stats.reconnects,
        predictions=stats.predictions,
        skipped_windows=sum(n for reason, n in skipped.items() if reason != "idle"),
        skipped={reason: n for reason, n in skipped.items() if reason != "idle"},
        motion=stats.motion,
        idle_windows=skipped.get("idle", 0),
        gated_frames=stats.gated,
        idle_s=round(stats.idle_s, 3),
        loop=stats.loop if is_file else None,
        last_error=stats.last_error,
    )
