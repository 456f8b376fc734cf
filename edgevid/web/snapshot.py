"""The live view's frames: one slot per source holding its latest downscaled JPEG.

The source thread offers every frame it retrieves anyway (``FrameReader._keep``); the slot encodes
one only when a viewer asked for a snapshot in the last :data:`WANTED_S` seconds and at most
``fps`` per second, so a daemon nobody watches spends nothing and a watched one a JPEG a second
(BENCHMARKS.md "Web snapshots"). Nothing queues: a new JPEG replaces the last one.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import cv2
import numpy as np

#: A viewer that fetched a snapshot within this many seconds keeps the encoding on.
WANTED_S = 5.0
#: The live view is a glance, not a video: at most this wide (height follows the aspect ratio).
MAX_WIDTH = 320
JPEG_QUALITY = 75


def encode_snapshot(frame: np.ndarray, max_width: int = MAX_WIDTH, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR frame as a JPEG at most ``max_width`` wide (INTER_AREA: no aliasing when shrinking)."""
    h, w = frame.shape[:2]
    if w > max_width:
        frame = cv2.resize(frame, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cv2.imencode could not encode the frame as JPEG")
    return buf.tobytes()


class SnapshotSlot:
    """A one-slot latest-holder, written by a source thread and read on the event loop."""

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic, wanted_s: float = WANTED_S) -> None:
        self.interval = 1.0 / fps
        self.clock, self.wanted_s = clock, wanted_s
        self._lock = threading.Lock()
        self._jpeg: tuple[bytes, float] | None = None  # (JPEG, wall-clock capture time)
        self._asked = -float("inf")  # monotonic time a viewer last asked
        self._encoded_at = -float("inf")
        self.encoded = 0  # JPEGs made
        self.encode_s = 0.0  # seconds spent making them (downscale + encode)
        self.failed = 0  # frames that would not encode

    def offer(self, frame: np.ndarray, now: float, wall: float) -> None:
        """Source thread: encode ``frame`` if a viewer is watching and the last JPEG is old enough;
        otherwise return at once (two float comparisons)."""
        if now - self._asked > self.wanted_s or now - self._encoded_at < self.interval:
            return
        self._encoded_at = now
        t0 = time.perf_counter()
        try:
            jpeg = encode_snapshot(frame)
        except (cv2.error, ValueError):
            self.failed += 1
            return
        self.encode_s += time.perf_counter() - t0
        with self._lock:
            self._jpeg = (jpeg, wall)
            self.encoded += 1

    def take(self) -> tuple[bytes, float] | None:
        """Event loop: the latest (JPEG, capture time), and keep encoding for the next few seconds.
        After a pause in viewing the held JPEG is old: None until a fresh one is made."""
        now = self.clock()
        idle, self._asked = now - self._asked > self.wanted_s, now
        with self._lock:
            if idle:
                self._jpeg = None
            return self._jpeg
