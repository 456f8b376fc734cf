"""Live frame sources for the daemon: camera, file or stream, with timeouts, reconnects and pacing.

Each source runs in its own thread (OpenCV reads block) and hands over only the frames that fall
on its sampling grid: one every ``window / M`` seconds, so each sampled frame is extracted once and
reused by every window it belongs to.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .config import SourceConfig

log = logging.getLogger("edgevid.sources")


@dataclass
class SourceStats:
    state: str = "starting"
    frames_in: int = 0
    sampled: int = 0
    dropped: int = 0
    reconnects: int = 0
    predictions: int = 0
    processed: int = 0
    skipped_windows: int = 0
    last_error: str | None = None


@dataclass
class SampledFrame:
    source: str
    k: int  # index on the source's sampling grid
    wall: float  # capture time, unix seconds
    media: float | None  # position in a file, seconds
    frame: np.ndarray


class GridSampler:
    """Picks the frame that covers each grid instant ``(k + 0.5) * dt``.

    A file frame ``i`` covers ``[i/fps, (i+1)/fps)``, which reproduces ``sample_indices`` exactly
    when a window spans a whole clip; a live frame serves the grid instants since the previous one.
    """

    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.next_k = 0

    def take(self, start: float, end: float) -> list[int]:
        """Grid indices whose instant lies in ``[start, end)``; instants before ``start`` are skipped."""
        out = []
        # 1e-9 s of slack: a grid instant that falls exactly on a frame boundary belongs to the
        # later frame, as in integer ``sample_indices``, despite float rounding.
        while (self.next_k + 0.5) * self.dt < end - 1e-9:
            if (self.next_k + 0.5) * self.dt >= start - 1e-9:
                out.append(self.next_k)
            self.next_k += 1
        return out


def _open_capture(cfg: SourceConfig) -> cv2.VideoCapture:
    kind = cfg.resolved_kind()
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout * 1000)]
    if kind == "camera":
        # Camera backends (V4L2) may not support the timeout properties, and OpenCV fails the whole
        # open when a backend rejects an open() parameter: set the read timeout best-effort instead
        # (the V4L2 driver bounds a read by itself).
        target = int(cfg.uri) if cfg.uri.isdigit() else cfg.uri
        cap = cv2.VideoCapture(target, cv2.CAP_ANY)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, cfg.read_timeout * 1000)
    else:
        cap = cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise OSError(f"cannot open {kind} {cfg.uri!r}")
    return cap


class FrameSource(threading.Thread):
    """Reads one source until stopped; calls ``emit`` with each sampled frame."""

    def __init__(self, cfg: SourceConfig, m: int, emit: Callable[[SampledFrame], None], stop: threading.Event) -> None:
        super().__init__(name=f"source-{cfg.id}", daemon=True)
        self.cfg = cfg
        self.kind = cfg.resolved_kind()
        self.sampler = GridSampler(cfg.window / m)
        self.emit = emit
        self.stop_event = stop
        self.stats = SourceStats()
        self._t0 = time.monotonic()
        self._media_offset = 0.0

    def run(self) -> None:
        delay = self.cfg.reconnect_min
        while not self.stop_event.is_set():
            try:
                cap = _open_capture(self.cfg)
            except (OSError, cv2.error) as exc:
                self._failed(str(exc))
                if not self._backoff(delay):
                    return
                delay = min(delay * 2, self.cfg.reconnect_max)
                continue
            self.stats.state = "running"  # last_error stays: it tells what the last reconnect was for
            try:
                got_frames, ended = self._read(cap)
            finally:
                cap.release()
            if got_frames:
                delay = self.cfg.reconnect_min
            if self.stop_event.is_set():
                return
            if ended and self.kind == "file":
                if not self.cfg.loop:
                    self.stats.state = "ended"
                    log.info("source %s: end of file %s", self.cfg.id, self.cfg.uri)
                    return
                continue  # loop: reopen at once
            self._failed(f"no frame for {self.cfg.stall_timeout:g} s (stalled)" if not ended else "stream ended")
            if not self._backoff(delay):
                return
            delay = min(delay * 2, self.cfg.reconnect_max)

    def _failed(self, message: str) -> None:
        self.stats.state = "reconnecting"
        log.warning("source %s: %s; retrying (reconnect %d)", self.cfg.id, message, self.stats.reconnects + 1)
        self.stats.last_error = message

    def _backoff(self, delay: float) -> bool:
        """Sleep ``delay`` with +-25 % jitter; False if stopped meanwhile."""
        self.stats.reconnects += 1
        return not self.stop_event.wait(delay * random.uniform(0.75, 1.25))

    def _read(self, cap: cv2.VideoCapture) -> tuple[bool, bool]:
        """Read until end, stall or stop; returns (any frame read, reached end of file)."""
        is_file = self.kind == "file"
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not 0 < fps < 1000:
            fps = 30.0
        frame_dt = 1.0 / fps
        paced_start = time.monotonic()
        index = 0
        last_ok = time.monotonic()
        prev_live = None
        got = False
        while not self.stop_event.is_set():
            if not cap.grab():
                if is_file:
                    self._media_offset += index * frame_dt
                    return got, True
                if time.monotonic() - last_ok > self.cfg.stall_timeout:
                    return got, False
                time.sleep(0.01)
                continue
            now_wall, now = time.time(), time.monotonic()
            last_ok = now
            got = True
            self.stats.frames_in += 1
            if is_file:
                media = self._media_offset + index * frame_dt
                ks = self.sampler.take(media, media + frame_dt)
                if self.cfg.realtime:
                    ahead = paced_start + index * frame_dt - time.monotonic()
                    if ahead > 0 and self.stop_event.wait(ahead):
                        return got, False
                    now_wall = time.time()
            else:
                media = None
                clock = now - self._t0
                ks = self.sampler.take(prev_live if prev_live is not None else clock - 1e-9, clock + 1e-9)
                prev_live = clock + 1e-9
            index += 1
            if not ks:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                continue
            for k in ks:
                self.stats.sampled += 1
                self.emit(SampledFrame(self.cfg.id, k, now_wall, media, frame))
        return got, False
