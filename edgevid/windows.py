"""One source's sliding windows: slots -> frames -> features -> a complete window, or a reason why not.

A window ends every ``hop`` slots; it is published only when each of its M slots has its frame's
feature. Each distinct frame is extracted once and keyed by its frame id, so a frame shared by
overlapping windows (or repeated in slots when the camera is slower than the sampling) costs one
extractor run. A window is skipped, and counted under its reason, when it has too many gaps or
when one of its frames will never be extracted (dropped or not admitted under overload).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .timing import MAX_GAP_FRACTION


@dataclass
class FrameInfo:
    """A captured frame as the daemon sees it (the image goes to the extractor, not here)."""

    fid: int  # per source, increasing
    t: float  # on the source's time axis (monotonic s, or position in the file)
    mono: float  # time.monotonic() at capture: latencies
    wall: float  # time.time() at capture: a label for subscribers
    media: float | None = None  # position in the file (s), file sources
    loop: int | None = None  # pass over a looping file
    awake: bool = True  # the motion gate let it through (always, for a source without a gate)


@dataclass
class Ready:
    """A complete window: features in slot order and the frames behind them."""

    end_k: int
    features: np.ndarray
    frames: list[FrameInfo]
    gaps: int
    new_frames: int  # distinct frames not in the previous window: the extractor runs it cost
    extract_ms: float
    #: Extractor (+ motion) ms of the frames whose features were not ready yet when the window's
    #: newest frame was captured: the work its capture -> publish latency cannot avoid (its floor,
    #: with the head's time).
    pending_ms: float = 0.0


@dataclass
class Skipped:
    end_k: int
    reason: str  # "gaps", "overload", or "idle": the motion gate found every frame of it still
    frames: list[FrameInfo] = field(default_factory=list)  # idle: the frames behind its slots
    gaps: int = 0


@dataclass
class _Slot:
    frame: FrameInfo | None
    gap: bool
    paused: bool


@dataclass
class WindowAssembler:
    m: int
    hop: int
    max_gaps: int = -1  # default: MAX_GAP_FRACTION of m
    slots: dict[int, _Slot] = field(default_factory=dict)
    features: dict[int, tuple[np.ndarray, float, float]] = field(
        default_factory=dict
    )  # fid -> (feature, extract ms, ready at)
    dropped: set[int] = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)
    next_end: int = -1
    _last: frozenset[int] = frozenset()  # frames of the previous decided window

    def __post_init__(self) -> None:
        if self.max_gaps < 0:
            self.max_gaps = math.floor(MAX_GAP_FRACTION * self.m)
        self.reset()

    def reset(self) -> None:
        """A new segment (reopened source, file loop): no window spans the seam."""
        self.slots.clear()
        self.features.clear()
        self.dropped.clear()
        self.next_end = self.m - 1
        self._last = frozenset()

    def add_slot(self, k: int, frame: FrameInfo | None, gap: bool, paused: bool = False) -> None:
        self.slots[k] = _Slot(frame, gap or frame is None, paused)

    def add_feature(self, fid: int, feature: np.ndarray, extract_ms: float, ready: float) -> None:
        """Frame ``fid``'s feature, what it cost (ms) and when it was ready (on the frames' ``mono`` clock)."""
        self.features[fid] = (feature, extract_ms, ready)

    def drop(self, fid: int) -> None:
        """This frame will never be extracted: every window holding it is skipped."""
        self.dropped.add(fid)

    def windows(self) -> list[Ready | Skipped]:
        """Windows that are due and decided, in order; stops at the first one still waiting."""
        out: list[Ready | Skipped] = []
        while self.next_end in self.slots:
            end = self.next_end
            result = self._decide(end)
            if result is None:
                break
            out.append(result)
            if isinstance(result, Skipped):
                self.skipped[result.reason] += 1
            self.next_end += self.hop
            self._prune(self.next_end - self.m + 1)
        return out

    def _decide(self, end: int) -> Ready | Skipped | None:
        ks = range(end - self.m + 1, end + 1)
        slots = [self.slots[k] for k in ks]
        if any(s.paused for s in slots):
            return Skipped(end, "overload")
        gaps = sum(s.gap for s in slots)
        frames: list[FrameInfo | None] = [s.frame for s in slots]
        if any(f is not None for f in frames) and not any(f.awake for f in frames if f is not None):
            self._last = frozenset()  # nothing of it was extracted
            return Skipped(end, "idle", _filled(frames), gaps)
        if gaps > self.max_gaps:
            return Skipped(end, "gaps")
        if any(s.frame is not None and s.frame.fid in self.dropped for s in slots):
            return Skipped(end, "overload")
        if any(f is not None and f.fid not in self.features for f in frames):
            return None  # still being extracted
        if all(f is None for f in frames):
            return Skipped(end, "gaps")
        filled = _filled(frames)
        features = np.stack([self.features[f.fid][0] for f in filled])
        fids = frozenset(f.fid for f in filled)
        new = fids - self._last  # what this window cost beyond the previous one
        self._last = fids
        newest = max(f.mono for f in filled)
        pending = sum(self.features[f][1] for f in fids if self.features[f][2] > newest)
        return Ready(end, features, filled, gaps, len(new), sum(self.features[f][1] for f in new), pending)

    def _prune(self, first_needed: int) -> None:
        for k in [k for k in self.slots if k < first_needed]:
            del self.slots[k]
        live = {s.frame.fid for s in self.slots.values() if s.frame is not None}
        for fid in [f for f in self.features if f not in live]:
            del self.features[fid]
        self.dropped &= live


def _filled(frames: list[FrameInfo | None]) -> list[FrameInfo]:
    """A slot with no frame at all borrows its nearest neighbour's (counted as a gap)."""
    return [f if f is not None else _nearest(frames, i) for i, f in enumerate(frames)]


def _nearest(frames: list[FrameInfo | None], i: int) -> FrameInfo:
    for d in range(1, len(frames)):
        for j in (i - d, i + d):
            if 0 <= j < len(frames) and frames[j] is not None:
                return frames[j]
    raise ValueError("window without any frame")
