"""Reading one opened capture: each frame timed, the slots it settles, and only the frames that
fill a slot converted (straight to the extractor's input size). A file is paced at its own
timestamps and its slots held until the file reaches them; a live capture is timed on arrival and
reopened when it stalls."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from ..capture import FPS_RANGE, believable
from ..config import SourceConfig, SourceTiming
from ..gate import MotionGate
from ..motion import MotionSpec, predecessors
from ..timing import TIME_EPS, FileClock, Fill, Liveness, Pacer, SlotFiller, SlotHold, StreamClock
from .base import Captured, Opened, Sink, SourceError, SourceStats
from .pipe import PipeCapture

if TYPE_CHECKING:
    from ..record import FrameRing
    from ..web.snapshot import SnapshotSlot


@dataclass
class Outcome:
    frames: int = 0
    ended: bool = False  # end of file / stream
    error: str | None = None


class FrameReader:
    """A source's frames, across reopenings: frame ids only grow, so a window never mixes two."""

    def __init__(
        self,
        cfg: SourceConfig,
        timing: SourceTiming,
        sink: Sink,
        stats: SourceStats,
        stop,
        convert: Callable[[np.ndarray], np.ndarray],
        clock: Callable[[], float],
        motion_grey: Callable[[np.ndarray], np.ndarray] | None,
        is_file: bool,
        gate: MotionGate | None = None,
        snapshot: "SnapshotSlot | None" = None,
        motion_spec: MotionSpec | None = None,
    ) -> None:
        self.cfg, self.timing, self.sink, self.stats, self.stop_event = cfg, timing, sink, stats, stop
        self.convert, self.clock, self.is_file = convert, clock, is_file
        self._fid = 0
        self._handed = 0  # frames with fid <= this were handed over
        # Motion stream: every frame becomes a small grey image; the last few since the segment
        # started are kept (the predecessors the spec's rule names, :func:`edgevid.motion.predecessors`).
        self.motion_grey = motion_grey
        self.motion_spec = motion_spec
        self._step = 1
        self._greys: deque[np.ndarray] = deque(maxlen=3)
        self.snapshot = snapshot  # the web page's live view: encodes only while watched, at most its fps
        self.ring: "FrameRing | None" = None  # [record]: recent frames at record.fps (pre-roll and clips)
        # Motion gate: each sampled frame's verdict, from the motion stream's grey image (or its own).
        self.gate = gate
        self._gate_last: tuple[float, bool] | None = None  # (time, awake) of the last frame it saw

    def _awake(self, frame: np.ndarray, grey: np.ndarray | None, t: float) -> bool:
        """The gate's verdict on a sampled frame at ``t``; the still time between frames is counted."""
        if self.gate is None:
            return True
        awake = self.gate.observe(grey if grey is not None else self.gate.grey(frame), t).awake
        if self._gate_last is not None and not self._gate_last[1] and not awake:
            self.stats.idle_s += max(t - self._gate_last[0], 0.0)
        self._gate_last = (t, awake)
        self.stats.motion = awake
        return awake

    def _keep(
        self, cap, t: float, mono: float, wall: float, media: float | None, wanted: bool = True
    ) -> Captured | None:
        """Retrieve the grabbed frame if it fills a slot (``wanted``) or the motion stream needs it as
        the next frame's predecessor; a Captured only for a wanted frame."""
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            self._greys.clear()
            return None
        if self.snapshot is not None:
            self.snapshot.offer(frame, mono, wall)
        if self.ring is not None:
            self.ring.offer(frame, mono, wall, media)
        grey = self.motion_grey(frame) if self.motion_grey is not None else None
        pair = self._motion_frames(grey) if grey is not None else None
        if not wanted:
            return None
        self._fid += 1
        loop = self.stats.loop if self.is_file else None
        return Captured(
            self._fid,
            t,
            mono,
            wall,
            media,
            loop,
            self._awake(frame, grey, t),
            image=self.convert(frame),
            motion_pair=pair,
        )

    def _set_step(self, fps: float) -> None:
        """The predecessor distance at this source's nominal frame rate (as ``classify`` reads the
        header's); the grey frames kept reach back two predecessors."""
        self._step = self.motion_spec.step(fps) if self.motion_spec is not None else 1
        self._greys = deque(maxlen=2 * self._step + 1)

    def _motion_frames(self, grey: np.ndarray) -> tuple:
        """``(predecessor, grey)``, with the predecessor's own predecessor appended for the rich
        descriptor: positions in the kept greys by the one rule of :func:`edgevid.motion.predecessors`,
        counted from the oldest kept frame (the segment's first until the deque fills)."""
        self._greys.append(grey)
        n = len(self._greys)
        # Position n - 1 is this frame; once the deque is full the rule never reaches past its start.
        p, p2 = predecessors(n - 1, self._step)
        prev = self._greys[p] if p is not None else None
        if self.motion_spec is None or self.motion_spec.descriptor != "rich":
            return (prev, grey)
        return (prev, grey, self._greys[p2] if p2 is not None else None)

    def hand_over(self, fills: list[Fill[Captured]], paused: bool) -> None:
        if not fills:
            return
        new = []
        for f in fills:
            if f.frame is not None and f.frame.fid > self._handed:
                self._handed = f.frame.fid
                new.append(f.frame)
        self.stats.sampled += len(new)
        self.sink.fills(self.cfg.id, fills, new, paused)

    def _offer(
        self, cap, filler: SlotFiller[Captured], t: float, mono: float, wall: float, media: float | None
    ) -> tuple[list[Fill[Captured]], bool]:
        """One grabbed frame at ``t``: converted only if it can fill a slot (and the source is not
        paused); returns the slots it settles and whether the source is paused."""
        paused = self.sink.paused(self.cfg.id)
        wanted = not paused and filler.wants(t)
        frame = None
        if wanted or (self.motion_grey is not None and not paused and self._predecessor(filler, t)):
            frame = self._keep(cap, t, mono, wall, media, wanted)
        else:
            if self.ring is not None and self.ring.wants(mono):  # [record], also while paused by overload
                ok, image = cap.retrieve()
                if ok and image is not None:
                    self.ring.offer(image, mono, wall, media)
            self._greys.clear()  # a frame not looked at: the next one has no known predecessor
        return filler.push(t, frame), paused

    def _predecessor(self, filler: SlotFiller[Captured], t: float) -> bool:
        """Keep a frame that fills no slot as the next one's predecessor (the motion stream)? Always
        while the scene moves; while the gate finds it still, only when the frame expected next
        fills a slot (what nearly every other frame of a still scene was retrieved and shrunk for).
        ``wants`` asked before this frame is pushed can only say yes more often than after."""
        if self.gate is None or self._gate_last is None or self._gate_last[1] or self._step > 1:
            return True  # (a predecessor several frames back, the rich descriptor's: keep every frame)
        return filler.wants(t + filler.interval)

    def _start(self) -> None:
        self._greys.clear()
        if self.gate is not None:
            self.gate.reset()
            self._gate_last = None
        self.sink.segment(self.cfg.id)

    def read_file(self, opened: Opened, running: Callable[[], None]) -> Outcome:
        fps = opened.fps
        if not believable(fps):
            raise SourceError(
                f"{self.cfg.uri}: header frame rate {fps:g} fps is outside {FPS_RANGE[0]:g}-{FPS_RANGE[1]:g} fps; "
                "re-mux the file with a real frame rate"
            )
        cap, frame_s, dt = opened.cap, 1.0 / fps, self.timing.dt
        clock, filler, hold = FileClock(fps), SlotFiller[Captured](dt, 0.0, frame_s), SlotHold[Captured](dt)
        self._set_step(fps)
        self._start()
        running()
        pacer, n, position = Pacer(self.clock()), 0, 0.0
        while not self.stop_event.is_set():
            if not cap.grab():
                if n:  # end of file: the slots inside the last frame's display interval
                    end = position + frame_s
                    hold.add(filler.push(end - 0.5 * dt + TIME_EPS, None), False)
                    self._release(hold, end)
                return Outcome(n, ended=True)
            n += 1
            self.stats.frames_in += 1
            position = clock.position(cap.get(cv2.CAP_PROP_POS_MSEC))
            if self.cfg.realtime:
                ahead = pacer.wait(position, self.clock())
                if ahead > 0 and self.stop_event.wait(ahead):
                    break
            # The frame's time is the centre of its display interval.
            fills, paused = self._offer(cap, filler, position + 0.5 * frame_s, self.clock(), time.time(), position)
            hold.add(fills, paused)
            self._release(hold, position + frame_s)
        return Outcome(n)

    def _release(self, hold: SlotHold[Captured], end: float) -> None:
        for run, paused in hold.release(end):
            self.hand_over(run, paused)

    def read_live(self, opened: Opened, running: Callable[[], None]) -> Outcome:
        cap, clock = opened.cap, StreamClock()
        filler: SlotFiller[Captured] | None = None
        nominal = 1.0 / opened.fps if believable(opened.fps) else self.timing.dt
        self._set_step(1.0 / nominal)
        self._start()
        running()
        n, live = 0, Liveness(self.cfg.stall_timeout, self.clock())
        while not self.stop_event.is_set():
            if not cap.grab():
                if isinstance(cap, PipeCapture) and cap.ended:  # the command exited: restart it
                    return Outcome(n, ended=True, error=cap.ended)
                if not live.alive(self.clock()):  # stalled
                    said = cap.stderr.text() if isinstance(cap, PipeCapture) else ""  # e.g. a camera timeout
                    return Outcome(
                        n, error=f"no frame for {self.cfg.stall_timeout:g} s (stalled){': ' + said if said else ''}"
                    )
                self.stop_event.wait(0.01)
                continue
            mono, wall = self.clock(), time.time()
            live.beat(mono)
            n += 1
            self.stats.frames_in += 1
            t = clock.time(mono, cap.get(cv2.CAP_PROP_POS_MSEC))
            if filler is None:  # slot 0 falls on the first frame
                filler = SlotFiller(self.timing.dt, t - 0.5 * self.timing.dt, nominal)
            self.hand_over(*self._offer(cap, filler, t, mono, wall, None))
        return Outcome(n)
