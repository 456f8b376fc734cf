"""The hand-over between source threads and the inference worker, and which frames it takes next.

Pure policy on plain data (the caller holds the lock and passes ``now``), so a test drives it with
its own clock: live sources' oldest frames first, whichever source they are from, then files one
frame each in turn; a live backlog older than ``max_lag`` is cut whole (one clean gap instead of
holes in many windows); a non-realtime file waits for room instead of losing frames.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ..gate import GatedFrames
from ..timing import Fill

#: A live frame waiting longer than this for the extractor is dropped with every frame of its
#: source queued before it.
MAX_LAG_S = 1.0
#: Frames a non-realtime file may queue before its reader waits (it is never dropped).
FILE_QUEUE = 16
#: Frames per extractor invoke: enough to amortize the call, small enough to keep latency low.
BATCH = 8


class Frame(Protocol):
    fid: int
    mono: float
    awake: bool  # the motion gate's verdict (True where there is no gate)


F = TypeVar("F", bound=Frame)


@dataclass
class Segment:
    """A new stretch of video started: the source's window starts afresh."""


@dataclass
class Slots(Generic[F]):
    """Slots the source settled, and whether overload kept its frames from the extractor."""

    fills: list[Fill[F]]
    paused: bool


@dataclass
class Feed(Generic[F]):
    """What one source has handed over and the worker has not yet taken."""

    live: bool
    gate: GatedFrames[F] | None = None  # a source with a motion gate: which of its frames are needed
    events: list[Segment | Slots[F]] = field(default_factory=list)
    #: Frames to extract, with the time each became due: its capture, or for a frame the gate held
    #: back, the capture of the awake frame that made it needed (its wait starts there).
    pending: deque[tuple[float, F]] = field(default_factory=deque)


@dataclass
class Taken(Generic[F]):
    """One turn of the worker: the frames to extract (source, frame), each source's events in
    order, and the frame ids cut for lag per source."""

    batch: list[tuple[str, F]]
    events: dict[str, list[Segment | Slots[F]]]
    cut: dict[str, list[int]]
    gated: dict[str, int] = field(default_factory=dict)  # gated sources: frames never extracted so far

    @property
    def touched(self) -> set[str]:
        return set(self.events) | set(self.cut) | {sid for sid, _ in self.batch}


class FeedQueue(Generic[F]):
    """Every source's feed; methods are called under the daemon's lock."""

    def __init__(
        self,
        live: dict[str, bool],
        batch: int = BATCH,
        max_lag: float = MAX_LAG_S,
        file_queue: int = FILE_QUEUE,
        gated: dict[str, int] | None = None,
    ) -> None:
        """``gated``: the sources with a motion gate, and their windows' M."""
        gates = gated or {}
        self.feeds: dict[str, Feed[F]] = {
            sid: Feed(is_live, GatedFrames(gates[sid]) if sid in gates else None) for sid, is_live in live.items()
        }
        self.batch, self.max_lag, self.file_queue = batch, max_lag, file_queue

    def segment(self, sid: str) -> None:
        feed = self.feeds[sid]
        feed.pending.clear()  # frames of the stretch that just ended: no window will use them
        if feed.gate is not None:
            feed.gate.reset()
        feed.events.append(Segment())

    def fills(self, sid: str, fills: list[Fill[F]], new: list[F], paused: bool) -> None:
        feed = self.feeds[sid]
        if not paused:
            if feed.gate is None:
                feed.pending.extend((f.mono, f) for f in new)
            else:
                first: dict[int, int] = {}
                for fill in fills:
                    if fill.frame is not None:
                        first.setdefault(fill.frame.fid, fill.k)
                for f in new:
                    feed.pending.extend((f.mono, g) for g in feed.gate.offer(first[f.fid], f, f.awake))
        feed.events.append(Slots(fills, paused))

    def full(self, sid: str) -> bool:
        """A file source read as fast as inference allows waits while this holds."""
        feed = self.feeds[sid]
        return not feed.live and len(feed.pending) >= self.file_queue

    def idle(self) -> bool:
        return not any(f.events or f.pending for f in self.feeds.values())

    def drained(self, sid: str) -> bool:
        feed = self.feeds[sid]
        return not feed.events and not feed.pending

    def take(self, now: float) -> Taken[F]:
        events = {sid: f.events for sid, f in self.feeds.items() if f.events}
        for sid in events:
            self.feeds[sid].events = []
        cut: dict[str, list[int]] = {}
        for sid, feed in self.feeds.items():
            if feed.live and feed.pending and now - feed.pending[0][0] > self.max_lag:
                cut[sid] = [f.fid for _, f in feed.pending]
                feed.pending.clear()
        batch: list[tuple[str, F]] = []
        live = [(f.pending[0][0], sid) for sid, f in self.feeds.items() if f.live and f.pending]
        heapq.heapify(live)  # the oldest live frame first, whichever source it is from
        while live and len(batch) < self.batch:
            _, sid = heapq.heappop(live)
            feed = self.feeds[sid]
            batch.append((sid, feed.pending.popleft()[1]))
            if feed.pending:
                heapq.heappush(live, (feed.pending[0][0], sid))
        files = deque(sid for sid, f in self.feeds.items() if not f.live and f.pending)
        while files and len(batch) < self.batch:  # then files, one frame each in turn
            sid = files.popleft()
            feed = self.feeds[sid]
            batch.append((sid, feed.pending.popleft()[1]))
            if feed.pending:
                files.append(sid)
        gated = {sid: f.gate.gated for sid, f in self.feeds.items() if f.gate is not None}
        return Taken(batch, events, cut, gated)
