"""The motion stream: a compact descriptor of dense optical flow into each sampled frame.

The appearance features (MobileNet) see one frame; what separates ``run`` from ``walk`` or
``sit`` from ``stand`` is how things move. For a sampled frame this computes dense optical flow
from the frame decoded (or captured) just before it to the frame itself, on small grey images, and
summarises it HOF/MBH-style: magnitude-weighted orientation histograms of the flow (HOF) and of
the spatial gradients of its x and y components (MBH, blind to a uniform camera pan) over a 2x2
grid plus the whole frame, and the mean and 90th-percentile flow magnitude; ``log1p`` of all.

One function serves ``classify``, the daemon (each source keeps its previous frame) and the
training cache, so the descriptor a head is trained on is the descriptor it is served. A frame
with no frame before it (the first of a clip or of a stream segment) gets the descriptor of zero
motion.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: Orientation bins of each histogram.
BINS = 8
#: Cells: 2x2 grid + the whole frame.
CELLS = 5
#: HOF, MBH-x, MBH-y histograms per cell, then mean and p90 of the flow magnitude.
DIM = 3 * CELLS * BINS + 2

Method = Literal["dis_ultrafast", "dis_fast", "farneback"]


class MotionSpec(BaseModel):
    """How a head's motion descriptor is computed (recorded in its manifest: a head trained on one
    flow method and size is served exactly that)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Method = Field(description="optical flow: OpenCV DIS (ultrafast/fast preset) or Farneback")
    width: int = Field(gt=7, description="grey image width the flow is computed on")
    height: int = Field(gt=7, description="grey image height")
    dim: int = Field(DIM, description="descriptor length")

    @property
    def id(self) -> str:
        """Short name, e.g. ``dis_ultrafast-160x120`` (feature cache folders are named by it)."""
        return f"{self.method}-{self.width}x{self.height}"


def parse_spec(text: str) -> MotionSpec:
    """``dis_ultrafast-160x120`` -> :class:`MotionSpec` (command-line form)."""
    try:
        method, size = text.rsplit("-", 1)
        w, h = (int(v) for v in size.lower().split("x"))
        return MotionSpec(method=method, width=w, height=h)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(
            f"motion spec {text!r}: expected METHOD-WxH, METHOD one of {', '.join(Method.__args__)}"
        ) from exc


def small_grey(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """A decoded frame (BGR or grey) -> a ``width`` x ``height`` grey image, area-averaged: the one
    cheap downscale of the motion stream and of the motion gate (:mod:`edgevid.gate`)."""
    small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small


class MotionEstimator:
    """Flow between two grey frames -> descriptor; one per thread (the DIS object is not shared)."""

    def __init__(self, spec: MotionSpec) -> None:
        self.spec = spec
        if spec.method == "farneback":
            self._dis = None
        else:
            preset = (
                cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
                if spec.method == "dis_ultrafast"
                else cv2.DISOPTICAL_FLOW_PRESET_FAST
            )
            self._dis = cv2.DISOpticalFlow.create(preset)
        h, w = spec.height, spec.width
        cell = (np.arange(h)[:, None] >= h // 2) * 2 + (np.arange(w)[None, :] >= w // 2)
        self._cell = cell.astype(np.int64).ravel()  # 0..3, row-major quadrants
        self._cell_px = np.bincount(self._cell, minlength=4).astype(np.float64)

    def grey(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A decoded frame -> the small grey image the flow is computed on (keep it as the next
        frame's predecessor)."""
        return small_grey(frame_bgr, self.spec.width, self.spec.height)

    def flow(self, prev_grey: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """Dense flow ``[H, W, 2]`` (pixels of the small image) from ``prev_grey`` to ``grey``."""
        if self._dis is not None:
            return self._dis.calc(prev_grey, grey, None)
        return cv2.calcOpticalFlowFarneback(prev_grey, grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def describe(self, prev_grey: np.ndarray | None, grey: np.ndarray) -> np.ndarray:
        """float32 ``[DIM]``: the descriptor of the motion from ``prev_grey`` into ``grey``
        (zero motion when there is no previous frame)."""
        if prev_grey is None:
            return np.zeros(self.spec.dim, np.float32)
        f = self.flow(prev_grey, grey)
        fx, fy = f[..., 0], f[..., 1]
        parts = [self._histograms(fx, fy)]
        for comp in (fx, fy):  # MBH: the flow's own spatial gradients
            gx = cv2.Sobel(comp, cv2.CV_32F, 1, 0, ksize=1)
            gy = cv2.Sobel(comp, cv2.CV_32F, 0, 1, ksize=1)
            parts.append(self._histograms(gx, gy))
        mag = np.sqrt(fx * fx + fy * fy)
        parts.append(np.array([mag.mean(), np.percentile(mag, 90)], np.float64))
        return np.log1p(np.concatenate(parts)).astype(np.float32)

    def __call__(self, prev_bgr: np.ndarray | None, frame_bgr: np.ndarray) -> np.ndarray:
        """Descriptor of the motion from one decoded frame to the next."""
        return self.describe(None if prev_bgr is None else self.grey(prev_bgr), self.grey(frame_bgr))

    def _histograms(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Magnitude-weighted orientation histograms: 4 quadrants then the whole frame, each the
        mean over its pixels (so cells of any size are comparable)."""
        mag, ang = cv2.cartToPolar(dx, dy)
        b = np.minimum((ang.ravel() * (BINS / (2 * np.pi))).astype(np.int64), BINS - 1)
        per_cell = np.bincount(
            self._cell * BINS + b, weights=mag.ravel().astype(np.float64), minlength=4 * BINS
        ).reshape(4, BINS)
        whole = per_cell.sum(0) / self._cell_px.sum()
        return np.concatenate([(per_cell / self._cell_px[:, None]).ravel(), whole])


def clip_motion(
    estimator: MotionEstimator, frames: dict[int, np.ndarray], indices: np.ndarray, *, greys: bool = False
) -> np.ndarray:
    """float32 ``[len(indices), DIM]``: the motion into each of these decoded frames of a clip
    (``frames``: decoded frames by index, holding each wanted one and the one before it; frame 0
    has none before it). ``greys``: ``frames`` already holds :meth:`MotionEstimator.grey` images."""
    out = np.empty((len(indices), estimator.spec.dim), np.float32)
    cache: dict[int, np.ndarray] = {}

    def grey(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = frames[i] if greys else estimator.grey(frames[i])
        return cache[i]

    for k, i in enumerate(indices):
        i = int(i)
        out[k] = estimator.describe(grey(i - 1) if i > 0 else None, grey(i))
    return out
