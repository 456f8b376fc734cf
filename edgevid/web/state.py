"""What the web page shows, kept on the event loop in bounded buffers (no aiohttp here).

Per source: a ring of recent predictions (``history_s`` at the source's hop, then the oldest goes),
the last :data:`EVENTS_MAX` event messages and the last prediction. Viewers of the live stream
(``/api/stream``) each get a bounded queue: a viewer that falls :data:`VIEWER_QUEUE` messages
behind is dropped (counted) and its page reconnects and reloads the state, so one slow browser
never grows the daemon's memory or delays the others.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..messages import Event, Prediction, Status

#: Event messages kept per source.
EVENTS_MAX = 50
#: Live-stream viewers served at once; more are refused (503) and counted.
VIEWERS_MAX = 8
#: Messages one viewer may be behind before it is dropped.
VIEWER_QUEUE = 256
#: A ring never holds more than this many predictions, whatever history_s / hop gives.
HISTORY_MAX = 20_000


def point(msg: Prediction) -> dict[str, Any]:
    """A prediction as the timeline needs it: time (window end, unix s), label, score, top-k."""
    return {
        "seq": msg.seq,
        "t": round(msg.window_end, 3),
        "label": msg.label,
        "score": round(msg.score, 4),
        "top": [[s.label, round(s.score, 4)] for s in msg.top],
        "loop": msg.loop,
    }


def event_item(msg: Event) -> dict[str, Any]:
    """An event message as the page lists it."""
    return {
        "id": msg.id,
        "seq": msg.seq,
        "phase": msg.phase,
        "label": msg.label,
        "score": None if msg.score is None else round(msg.score, 4),
        "best_score": round(msg.best_score, 4),
        "started_at": round(msg.started_at, 3),
        "duration_s": round(msg.duration_s, 3),
        "t": round(msg.window_end, 3),
    }


@dataclass
class SourceView:
    """One source's recent past, bounded."""

    id: str
    hop_s: float
    history: deque = field(default_factory=deque)
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_MAX))
    last: dict[str, Any] | None = None
    predictions: int = 0  # predictions seen
    aged_out: int = 0  # predictions that left the ring (older than history_s)


@dataclass(eq=False)  # hashed by identity: a set of open streams
class Viewer:
    """One open ``/api/stream``: its bounded queue of SSE frames (None ends the stream)."""

    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    lagged: bool = False


class WebState:
    """The page's data, fed by the daemon's messages (on the event loop, in order)."""

    def __init__(self, sources: dict[str, float], history_s: float) -> None:
        """``sources``: each source's hop in seconds (the ring holds ``history_s`` of them)."""
        self.history_s = history_s
        self.sources = {sid: SourceView(sid, hop) for sid, hop in sources.items()}
        for view in self.sources.values():
            view.history = deque(maxlen=ring_size(history_s, view.hop_s))
        self.status: Status | None = None
        self.viewers: set[Viewer] = set()
        self.refused = 0  # viewers turned away (VIEWERS_MAX open)
        self.lagged = 0  # viewers dropped for falling VIEWER_QUEUE behind
        self.sent = 0  # SSE frames queued to viewers
        self.dropped = 0  # SSE frames a lagging viewer never got

    # -- fed by the daemon ---------------------------------------------------------------------
    def message(self, topic: str, message: Any) -> None:
        """Every message the daemon emits; unknown ones are ignored."""
        kind = getattr(message, "type", None)
        if kind == "prediction":
            view = self.sources.get(message.source)
            if view is None:
                return
            p = point(message)
            if len(view.history) == view.history.maxlen:
                view.aged_out += 1
            view.history.append(p)
            view.last = p
            view.predictions += 1
            self.broadcast("prediction", {"source": view.id, **p})
        elif kind == "event":
            view = self.sources.get(message.source)
            if view is None:
                return
            e = event_item(message)
            view.events.append(e)
            self.broadcast("event", {"source": view.id, **e})
        elif kind == "status":
            self.status = message
            self.broadcast("status", message.model_dump(mode="json"))

    # -- viewers ---------------------------------------------------------------------------------
    def join(self) -> Viewer | None:
        """A new live-stream viewer, or None (counted) when VIEWERS_MAX are open."""
        if len(self.viewers) >= VIEWERS_MAX:
            self.refused += 1
            return None
        viewer = Viewer()
        self.viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def broadcast(self, kind: str, data: dict[str, Any]) -> None:
        """One SSE frame to every viewer; a viewer VIEWER_QUEUE behind gets the end-of-stream mark
        instead (its page reconnects and reloads the state)."""
        if not self.viewers:
            return
        frame = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for viewer in self.viewers:
            if viewer.lagged:
                self.dropped += 1
            elif viewer.queue.qsize() >= VIEWER_QUEUE:
                viewer.lagged = True
                self.lagged += 1
                self.dropped += 1
                viewer.queue.put_nowait(None)  # one past the bound, once
            else:
                viewer.queue.put_nowait(frame)
                self.sent += 1

    def close(self) -> None:
        """End every live stream (the daemon stops)."""
        for viewer in self.viewers:
            viewer.lagged = True
            viewer.queue.put_nowait(None)

    @property
    def queued(self) -> int:
        return sum(v.queue.qsize() for v in self.viewers)

    # -- read by the API -------------------------------------------------------------------------
    def source_json(self, sid: str, since: float | None = None) -> dict[str, Any]:
        """One source's ring (newer than ``since``, unix s), events and last prediction."""
        view = self.sources[sid]
        history = [p for p in view.history if since is None or p["t"] > since]
        return {
            "id": sid,
            "hop_s": view.hop_s,
            "last": view.last,
            "predictions": view.predictions,
            "aged_out": view.aged_out,
            "history": history,
            "events": list(view.events),
        }

    def web_json(self) -> dict[str, Any]:
        return {
            "viewers": len(self.viewers),
            "viewers_max": VIEWERS_MAX,
            "refused": self.refused,
            "lagged": self.lagged,
            "sent": self.sent,
            "dropped": self.dropped,
        }


def ring_size(history_s: float, hop_s: float) -> int:
    """Predictions in ``history_s`` at one per ``hop_s`` (and one more), at most HISTORY_MAX."""
    return max(2, min(HISTORY_MAX, math.ceil(history_s / max(hop_s, 1e-3)) + 1))
