"""Action events from a source's predictions: ``start`` / ``update`` / ``end``, debounced.

The rule lives in :class:`EventTracker`, driven only by the times it is given (a prediction's media
time for files, its capture time otherwise), so tests run it with a fake clock:

- a label is *present* in a window when it is the window's top-1 with a (calibrated) score of at
  least ``min_score``;
- ``start``: the same label has been present for ``min_duration`` seconds (from the end of the
  first such window to the end of the current one);
- ``update``: while the event lasts, at most every ``update_interval`` seconds (best score, duration);
- ``end``: the label has been absent for ``end_after`` seconds, or another label has met the start
  rule while it was absent (one event at a time per source); also when the clock goes back (a file
  source's next loop) or the source restarts.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

from .messages import Event, Prediction


@dataclass
class _Candidate:
    label: int
    since: float  # clock at the end of the first window it was top-1 and present
    started_at: float  # that window's start (capture time)
    started_media: float | None  # and its media position (files)


@dataclass
class _Active:
    id: str
    label: int
    since: float
    started_at: float
    started_media: float | None
    last_present: float
    last_update: float
    best: float


@dataclass(frozen=True)
class Window:
    """What the tracker needs of a prediction: its times, the clock, and its sequence number."""

    start: float  # capture time (unix s) of the first slot
    end: float
    clock: float  # the event clock: media end for files, else the capture end
    seq: int
    media_start: float | None = None
    media_end: float | None = None


_prefix = f"{os.getpid():x}"
_counter = itertools.count(1)


def new_event_id(source: str, at: float) -> str:
    """Unique across sources, restarts and loops: source, start time (ms), process and a counter."""
    return f"{source}-{int(at * 1000):x}-{_prefix}-{next(_counter)}"


class EventTracker:
    """One source's event state; :meth:`step` takes each prediction's probabilities in order."""

    def __init__(
        self,
        source: str,
        labels: list[str],
        *,
        min_score: float,
        min_duration: float,
        end_after: float,
        update_interval: float,
    ) -> None:
        self.source = source
        self.labels = labels
        self.min_score = min_score
        self.min_duration = min_duration
        self.end_after = end_after
        self.update_interval = update_interval
        self.cand: _Candidate | None = None
        self.active: _Active | None = None
        self.last_clock: float | None = None
        self.last_window: Window | None = None
        self.seq = 0

    def step(self, probs: np.ndarray | None, w: Window) -> list[Event]:
        """The events this window causes (none, or an end and/or a start, or an update).
        ``probs`` None: an idle window (the motion gate found it still): no label is present."""
        out: list[Event] = []
        if self.last_clock is not None and w.clock < self.last_clock:  # time went back: a new pass
            out += self.reset()
        self.last_clock = w.clock
        top = int(np.argmax(probs)) if probs is not None else -1
        top_ok = probs is not None and float(probs[top]) >= self.min_score
        if top_ok:
            if self.cand is None or self.cand.label != top:
                self.cand = _Candidate(top, w.clock, w.start, w.media_start)
        else:
            self.cand = None
        a = self.active
        if a is not None:
            score = float(probs[a.label]) if probs is not None else 0.0
            if top == a.label and top_ok:
                a.last_present = w.clock
                a.best = max(a.best, score)
                if w.clock - a.last_update >= self.update_interval:
                    a.last_update = w.clock
                    out.append(self._message("update", a, w, score))
            else:
                other = (
                    self.cand is not None
                    and self.cand.label != a.label
                    and w.clock - self.cand.since >= self.min_duration
                )
                if w.clock - a.last_present >= self.end_after or other:
                    out.append(self._message("end", a, w, score))
                    self.active = None
        if probs is not None and self.active is None and self.cand is not None:
            self._start(probs, w, out)
        self.last_window = w
        return out

    def _start(self, probs: np.ndarray, w: Window, out: list[Event]) -> None:
        c = self.cand
        if c is not None and w.clock - c.since >= self.min_duration:
            self.active = _Active(
                new_event_id(self.source, c.started_at),
                c.label,
                c.since,
                c.started_at,
                c.started_media,
                w.clock,
                w.clock,
                float(probs[c.label]),
            )
            out.append(self._message("start", self.active, w, float(probs[c.label])))

    def reset(self) -> list[Event]:
        """End what is open (the stream of windows broke: a new file pass, a reopened source)."""
        out = []
        if self.active is not None and self.last_window is not None:
            out.append(self._message("end", self.active, self.last_window, None))
        self.active, self.cand, self.last_clock = None, None, None
        return out

    def _message(self, phase: str, a: _Active, w: Window, score: float | None) -> Event:
        self.seq += 1
        return Event(
            source=self.source,
            seq=self.seq,
            id=a.id,
            phase=phase,
            label=self.labels[a.label],
            score=None if score is None else round(score, 6),
            best_score=round(a.best, 6),
            started_at=a.started_at,
            started_media=a.started_media,
            duration_s=round(a.last_present - a.since, 4),
            window_start=w.start,
            window_end=w.end,
            media_start=w.media_start,
            media_end=w.media_end,
            prediction_seq=w.seq,
        )


class SourceEvents:
    """The trackers of every source with events enabled, fed the published predictions in order."""

    def __init__(self, sources: list, labels: list[str]) -> None:
        self.trackers = {
            s.id: EventTracker(
                s.id,
                labels,
                min_score=s.min_score,
                min_duration=s.events.min_duration,
                end_after=s.events.end_after,
                update_interval=s.events.update_interval,
            )
            for s in sources
            if s.events.enabled
        }

    def prediction(self, message: Prediction, probs: np.ndarray | None) -> list[Event]:
        """Events caused by one prediction; the clock is its media time for files, else capture time."""
        tracker = self.trackers.get(message.source)
        if tracker is None:
            return []
        clock = message.media_end if message.media_end is not None else message.window_end
        return tracker.step(
            probs,
            Window(
                message.window_start, message.window_end, clock, message.seq, message.media_start, message.media_end
            ),
        )

    def reset(self, source: str | None = None) -> list[Event]:
        """End the open event of one source (its stream of windows broke), or of all."""
        return [e for sid, t in self.trackers.items() if source in (None, sid) for e in t.reset()]
