"""The motion gate: skip the extractor, the motion stream and the head while a source sees a still scene.

A camera on a shelf mostly films an empty room, and the head still answers something for every
window (a still frame with sensor noise reads as ``clap 0.79``), at full extractor cost. Like
Frigate, which runs its detector only where motion is found, a source keeps a cheap model of its
own still picture and lets a window through only when enough of the picture changed:

- the small grey frame the motion stream already makes (:meth:`edgevid.motion.MotionEstimator.grey`,
  or :func:`edgevid.motion.small_grey` for a head without motion), area-averaged once more to the
  gate's own working size, so its threshold means the same whatever size the head's motion uses;
- a running-average background with a time constant in seconds (not per frame: the blend is
  ``1 - exp(-dt / background_s)``, so a camera at 5 or 30 fps and a gap in the stream behave alike;
  after a long gap the background simply becomes the new frame);
- a global gain, so a slow brightness change or a flickering light, which scale the whole picture,
  are not motion;
- a per-pixel threshold in grey levels, and a minimum changed area as a fraction of the picture
  (sensor noise, compression and a swaying branch change few pixels; a person changes many);
- optional mask polygons in normalized coordinates (a timestamp overlay, a tree) never count;
- hysteresis: ``wake_frames`` frames in a row with motion wake the source, and it stays awake for
  ``hold_s`` after the last one, so a moving scene does not flicker between gated and not.

Every rule takes the frame's timestamp; nothing here reads a clock. The defaults come from
``tools/gate_eval.py`` (BENCHMARKS.md "Motion gate").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .motion import small_grey
from .timing import TIME_EPS

#: A polygon: (x, y) corners, 0..1 of the picture's width and height from its top-left corner.
Polygon = tuple[tuple[float, float], ...]


class GateSpec(BaseModel):
    """How a source decides that its picture is still (defaults measured: BENCHMARKS.md "Motion gate")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(80, gt=7, description="working grey width (incoming grey frames are area-averaged to it)")
    height: int = Field(60, gt=7, description="working grey height")
    background_s: float = Field(3.0, gt=0, description="time constant (s) of the running-average background")
    threshold: float = Field(
        25.0, gt=0, description="grey levels a pixel must differ from the background to count as changed"
    )
    min_area: float = Field(
        0.01, gt=0, le=1, description="fraction of the picture that must change for a frame to have motion"
    )
    wake_frames: int = Field(2, ge=1, description="frames in a row with motion that wake the source")
    hold_s: float = Field(1.0, ge=0, description="seconds the source stays awake after its last frame with motion")
    compensate: bool = Field(
        True, description="match the background's overall brightness to the frame's before comparing"
    )
    masks: tuple[Polygon, ...] = Field((), description="polygons (normalized x, y) whose pixels never count")

    @field_validator("masks")
    @classmethod
    def _polygons(cls, masks: tuple[Polygon, ...]) -> tuple[Polygon, ...]:
        for i, poly in enumerate(masks):
            if len(poly) < 3:
                raise PydanticCustomError(
                    "mask", "polygon {i} has {n} corner(s); a mask needs at least 3", {"i": i, "n": len(poly)}
                )
            if any(not (0.0 <= c <= 1.0) for corner in poly for c in corner):
                raise PydanticCustomError(
                    "mask", "polygon {i}: corners are normalized (x, y), each 0..1 of the picture", {"i": i}
                )
        return masks


class GateConfig(GateSpec):
    """A source's motion gate as configured (``[sources.gate]``): on unless ``enabled = false``."""

    enabled: bool = Field(True, description="skip the extractor, motion and head while the picture is still")

    @property
    def spec(self) -> GateSpec:
        return GateSpec(**self.model_dump(exclude={"enabled"}))


def mask_pixels(masks: Iterable[Polygon], width: int, height: int) -> np.ndarray:
    """bool ``[height, width]``: True where a pixel counts (outside every mask polygon)."""
    ignored = np.zeros((height, width), np.uint8)
    for poly in masks:
        pts = np.array([[x * width, y * height] for x, y in poly], np.float64)
        if len(pts) < 3:
            raise ValueError(f"a mask polygon needs at least 3 corners, got {len(pts)}")
        cv2.fillPoly(ignored, [np.round(pts).astype(np.int32)], 1)
    return ignored == 0


class Background:
    """The running-average picture of a source, compared with each new frame.

    ``update`` returns the absolute difference of the frame from the background as it was before
    the frame (valid pixels only, 1-D float32), then blends the frame in. The first frame, and any
    frame after a gap much longer than ``background_s``, becomes the background (difference zero).
    """

    def __init__(self, background_s: float, valid: np.ndarray, compensate: bool = True) -> None:
        self.background_s = background_s
        self.compensate = compensate
        self._valid = valid.ravel()
        self._all = bool(self._valid.all())
        self._bg: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        """Forget the picture (a new stream segment): the next frame becomes the background."""
        self._bg, self._t = None, None

    def update(self, grey: np.ndarray, t: float) -> np.ndarray:
        if self._t is not None and t < self._t - TIME_EPS:
            raise ValueError(f"frame time {t} is before the previous frame's {self._t}")
        x = grey.astype(np.float32).ravel()
        if not self._all:
            x = x[self._valid]
        if self._bg is None or self._t is None:
            self._bg, self._t = x, t
            return np.zeros_like(x)
        bg = self._bg
        if self.compensate:
            # A light dimming or flickering scales the whole picture; a person changes a part of it.
            bg = bg * np.float32(float(x.mean()) / max(float(bg.mean()), 1.0))
        diff = np.abs(x - bg)
        a = np.float32(-math.expm1(-max(t - self._t, 0.0) / self.background_s))
        self._bg = self._bg + a * (x - self._bg)
        self._t = t
        return diff


def changed_fraction(diff: np.ndarray, threshold: float, pixels: int) -> float:
    """Fraction of the ``pixels`` of the whole picture whose difference exceeds ``threshold``."""
    return float(np.count_nonzero(diff > threshold)) / pixels


class Hysteresis:
    """Awake or gated, from per-frame motion: ``wake_frames`` motion frames in a row wake the
    source; it sleeps again once ``hold_s`` has passed since the last motion frame (a person
    pausing mid-action keeps the head running)."""

    def __init__(self, wake_frames: int, hold_s: float) -> None:
        self.wake_frames = wake_frames
        self.hold_s = hold_s
        self._run = 0
        self._last_motion: float | None = None
        self._awake = False

    def reset(self) -> None:
        self._run, self._last_motion, self._awake = 0, None, False

    def step(self, motion: bool, t: float) -> bool:
        """Feed one frame's verdict at time ``t``; return whether the source is awake at ``t``."""
        self._run = self._run + 1 if motion else 0
        if motion and (self._awake or self._run >= self.wake_frames):
            self._awake, self._last_motion = True, t
        elif self._awake and self._last_motion is not None and t - self._last_motion > self.hold_s + TIME_EPS:
            self._awake = False
        return self._awake


@dataclass(frozen=True)
class GateFrame:
    """The gate's verdict on one frame."""

    t: float
    changed: float  # fraction of the picture that differs from the background
    motion: bool  # changed >= min_area
    awake: bool  # after hysteresis: this frame's window must be processed


class MotionGate:
    """One source's gate: feed every sampled grey frame with its timestamp, in order."""

    def __init__(self, spec: GateSpec | None = None) -> None:
        self.spec = spec or GateSpec()
        valid = mask_pixels(self.spec.masks, self.spec.width, self.spec.height)
        self._pixels = self.spec.width * self.spec.height
        self.background = Background(self.spec.background_s, valid, self.spec.compensate)
        self.hysteresis = Hysteresis(self.spec.wake_frames, self.spec.hold_s)

    def reset(self) -> None:
        """A new stream segment: relearn the picture, start gated."""
        self.background.reset()
        self.hysteresis.reset()

    def grey(self, frame: np.ndarray) -> np.ndarray:
        """A decoded frame -> the gate's working grey image (when no motion stream makes one)."""
        return small_grey(frame, self.spec.width, self.spec.height)

    def observe(self, grey: np.ndarray, t: float) -> GateFrame:
        """A grey frame (any size; the motion stream's own grey image) at time ``t`` -> verdict."""
        if grey.shape[:2] != (self.spec.height, self.spec.width) or grey.ndim != 2:
            grey = small_grey(grey, self.spec.width, self.spec.height)
        changed = changed_fraction(self.background.update(grey, t), self.spec.threshold, self._pixels)
        motion = changed >= self.spec.min_area
        return GateFrame(t, changed, motion, self.hysteresis.step(motion, t))


def window_gated(frames: Iterable[GateFrame]) -> bool:
    """A window is gated (skipped: no extractor, motion or head) when none of its frames is awake."""
    return not any(f.awake for f in frames)


F = TypeVar("F")


class GatedFrames(Generic[F]):
    """Which sampled frames of a gated source the extractor must see, and when.

    A window is processed when any of its frames is awake (:func:`window_gated`), so every frame
    within ``m - 1`` slots of an awake one is needed: a frame after an awake one is passed on at
    once; a frame seen asleep is held (at most ``m``) until an awake frame within ``m - 1`` slots
    arrives, which passes the held ones on before itself, or until it can no longer share a window
    with one, when it is counted as gated (never extracted). Pure policy: the daemon's feed queue
    calls it under its lock."""

    def __init__(self, m: int) -> None:
        self.m = m
        self._held: deque[tuple[int, F]] = deque()
        self._last_awake: int | None = None
        self.gated = 0  # frames never extracted because the scene was still

    def reset(self) -> None:
        """A new stream segment: no window spans the seam, so nothing held is needed."""
        self.gated += len(self._held)
        self._held.clear()
        self._last_awake = None

    def offer(self, k: int, frame: F, awake: bool) -> list[F]:
        """Frame ``frame`` first fills slot ``k`` (slots in order); returns the frames to extract now, in order."""
        reach = k - (self.m - 1)  # the earliest slot that can share a window with slot k
        while self._held and self._held[0][0] < reach:
            self._held.popleft()
            self.gated += 1
        if awake:
            out = [f for _, f in self._held] + [frame]
            self._held.clear()
            self._last_awake = k
            return out
        if self._last_awake is not None and self._last_awake >= reach:
            return [frame]
        self._held.append((k, frame))
        if len(self._held) > self.m:  # a frame fills at least one slot: never reached, a bound all the same
            self._held.popleft()
            self.gated += 1
        return []
