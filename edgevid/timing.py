"""Timing rules of a live source, as small classes a test drives with its own clock.

- :class:`SlotFiller`: M-slot windows on a time grid, each slot filled by the nearest captured frame.
- :class:`StreamClock` / :class:`FileClock`: the time of a captured frame (its own timestamp while sane).
- :class:`Backoff`: reconnect delays.
- :class:`SlotHold`: a file's settled slots, handed over only once the file reaches their end.
- :class:`Pacer`: when a realtime file's next frame is due.

Times here are seconds on one monotonic axis per source (``time.monotonic()`` for live sources,
the position in the file for files); wall-clock time is only ever a label.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Seconds of float rounding every time comparison here absorbs (slot instants, ties between two
#: frames, a slot's end against the file's): one tolerance for the daemon and ``classify`` alike.
TIME_EPS = 1e-9

#: A window may have at most this fraction of its slots far from any captured frame ("gaps");
#: beyond it the window is skipped rather than published with frames repeated to fill the holes.
MAX_GAP_FRACTION = 0.2


@dataclass
class Fill(Generic[T]):
    """Slot ``k``'s frame (the nearest one kept; None if none was) and whether it is a gap: no
    captured frame within one sampling interval of the slot's instant."""

    k: int
    frame: T | None
    gap: bool


class SlotFiller(Generic[T]):
    """Slots at ``origin + (k + 0.5) * dt``, each taking the captured frame nearest its instant.

    Frames arrive in time order, so slot ``k`` is settled as soon as a frame at or after its
    instant arrives: the nearer of that frame and the one before it. A frame's time is the centre
    of the interval it shows (for a file: pts + half a frame), which makes windows over a whole
    constant-rate clip pick exactly :func:`edgevid.sampling.sample_indices`.

    :meth:`wants` tells the capture loop, before it pays for retrieving and converting a frame,
    whether the frame can fill any slot: only about one frame per slot is ever converted.
    """

    def __init__(self, dt: float, origin: float, frame_interval: float) -> None:
        if not dt > 0:
            raise ValueError(f"sampling interval must be > 0, got {dt}")
        self.dt = dt
        self.origin = origin
        self.next_k = 0
        self.interval = frame_interval if frame_interval > 0 else dt  # expected time between frames
        self._prev: tuple[float, T | None] | None = None

    def instant(self, k: int) -> float:
        return self.origin + (k + 0.5) * self.dt

    def _new_is_nearer(self, t: float, s: float) -> bool:
        # Ties go to the later frame, as in sample_indices; TIME_EPS absorbs float rounding.
        return self._prev is None or (t - s) <= (s - self._prev[0]) + TIME_EPS

    def wants(self, t: float) -> bool:
        """Should the frame at ``t`` be kept? Yes if it is the nearer frame for a slot it settles,
        or if the next slot is closer to it than to the frame expected after it."""
        k = self.next_k
        while self.instant(k) <= t + TIME_EPS:
            if self._new_is_nearer(t, self.instant(k)):
                return True
            k += 1
        return self.instant(k) - t < self.interval

    def push(self, t: float, frame: T | None) -> list[Fill[T]]:
        """Add the frame at ``t`` (None: not kept); returns the slots it settles, in order."""
        out: list[Fill[T]] = []
        while self.instant(self.next_k) <= t + TIME_EPS:
            s = self.instant(self.next_k)
            new = (abs(t - s), frame)
            prev = (abs(s - self._prev[0]), self._prev[1]) if self._prev is not None else (math.inf, None)
            # The nearer frame, or the other one if the nearer was not kept.
            candidates = [new, prev] if self._new_is_nearer(t, s) else [prev, new]
            kept = [(d, f) for d, f in candidates if f is not None]
            dist, chosen = kept[0] if kept else (math.inf, None)
            out.append(Fill(self.next_k, chosen, gap=dist > self.dt + TIME_EPS))
            self.next_k += 1
        if self._prev is not None and t > self._prev[0]:
            # Smoothed frame interval (live cameras drift from their nominal rate).
            self.interval = 0.8 * self.interval + 0.2 * min(t - self._prev[0], 10 * self.interval)
        self._prev = (t, frame)
        return out


class StreamClock:
    """Times live frames by the stream's own timestamps while they are sane, by arrival otherwise.

    A network stream delivers frames in bursts; its presentation timestamps say when they were
    captured. They are mapped onto the monotonic clock from an anchor and trusted while they
    increase and stay within ``max_drift`` seconds of arrival; otherwise the clock re-anchors.
    """

    def __init__(self, max_drift: float = 0.5) -> None:
        self.max_drift = max_drift
        self._anchor: tuple[float, float] | None = None  # (arrival, pts seconds)
        self._last_pts: float | None = None
        self._last_t = -math.inf
        self.resyncs = 0
        self.using_pts = False

    def time(self, arrival: float, pts_ms: float | None) -> float:
        pts = pts_ms / 1000.0 if pts_ms is not None and math.isfinite(pts_ms) and pts_ms > 0 else None
        t = arrival
        if pts is None:
            self._anchor = None
            self.using_pts = False
        elif self._anchor is None or self._last_pts is None or pts <= self._last_pts:
            if self._anchor is not None:
                self.resyncs += 1
            self._anchor = (arrival, pts)
        else:
            mapped = self._anchor[0] + (pts - self._anchor[1])
            if abs(mapped - arrival) <= self.max_drift:
                t = mapped
                self.using_pts = True
            else:
                self.resyncs += 1
                self._anchor = (arrival, pts)
        self._last_pts = pts
        t = max(t, self._last_t + 1e-6)  # never backwards, whatever the stream does
        self._last_t = t
        return t


class FileClock:
    """Position of each decoded frame in its file: the frame's timestamp while timestamps increase
    sensibly (variable-frame-rate files sample right; AVI null frames keep their time), else the
    previous position plus one nominal frame."""

    def __init__(self, fps: float) -> None:
        self.frame_s = 1.0 / fps
        self._first: float | None = None
        self._last: float | None = None

    def position(self, pts_ms: float | None) -> float:
        """Start of the frame's display interval, seconds from the file's first frame."""
        pts = pts_ms / 1000.0 if pts_ms is not None and math.isfinite(pts_ms) else None
        if self._last is None:
            self._first = pts if pts is not None else 0.0
            self._last = 0.0
            return 0.0
        rel = pts - self._first if pts is not None else None
        if rel is None or not (self._last < rel <= self._last + 10 * self.frame_s + 1.0):
            rel = self._last + self.frame_s
        self._last = rel
        return rel


class Backoff:
    """Exponential reconnect delays with +-25 % jitter, reset after a success."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum, self.maximum = minimum, max(minimum, maximum)
        self.current = minimum
        self.rng = rng or random.Random()

    def next(self) -> float:
        delay = self.current * self.rng.uniform(0.75, 1.25)
        self.current = min(self.current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.minimum


class Liveness:
    """Whether a loop that should beat often still does: systemd's watchdog is pinged only while
    the inference worker beats, so a hung worker (not just a dead process) gets the service
    restarted; a live source whose frames stop for its ``stall_timeout`` (counted from opening, so
    one that never sends a frame too) is reopened. ``grace``: longest quiet time that still counts
    as alive."""

    def __init__(self, grace: float, now: float) -> None:
        self.grace = grace
        self.last = now

    def beat(self, now: float) -> None:
        self.last = now

    def alive(self, now: float) -> bool:
        return now - self.last < self.grace


class SlotHold(Generic[T]):
    """A file's settled slots, held until the file is known to reach the end of each slot's
    interval: a window is published only if it fits in the file (as ``sampling.window_starts``
    counts them). Released in runs that share their ``paused`` flag, in slot order."""

    def __init__(self, dt: float) -> None:
        self.dt = dt
        self._held: list[tuple[Fill[T], bool]] = []

    def add(self, fills: list[Fill[T]], paused: bool) -> None:
        self._held.extend((f, paused) for f in fills)

    def release(self, end: float) -> list[tuple[list[Fill[T]], bool]]:
        """The runs of held slots whose interval ends by ``end`` (seconds into the file)."""
        runs: list[tuple[list[Fill[T]], bool]] = []
        held = self._held
        while held and (held[0][0].k + 1) * self.dt <= end + TIME_EPS:
            paused, run = held[0][1], []
            while held and held[0][1] == paused and (held[0][0].k + 1) * self.dt <= end + TIME_EPS:
                run.append(held.pop(0)[0])
            runs.append((run, paused))
        return runs


class Pacer:
    """A realtime file plays at its own timestamps: a frame at ``position`` seconds into the file
    is due ``position`` seconds after the file opened (``start``); a reader that fell behind
    waits for nothing until it has caught up."""

    def __init__(self, start: float) -> None:
        self.start = start

    def wait(self, position: float, now: float) -> float:
        """Seconds to wait before the frame at ``position`` (0 when it is due or late)."""
        return max(0.0, self.start + position - now)
