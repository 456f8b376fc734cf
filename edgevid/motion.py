"""The motion stream: a compact descriptor of dense optical flow into each sampled frame.

The appearance features (MobileNet) see one frame; what separates ``run`` from ``walk`` or
``sit`` from ``stand`` is how things move. For a sampled frame this computes dense optical flow
from the frame decoded (or captured) just before it to the frame itself, on small grey images, and
summarises it HOF/MBH-style: magnitude-weighted orientation histograms of the flow (HOF) and of
the spatial gradients of its x and y components (MBH, blind to a uniform camera pan) over a 2x2
grid plus the whole frame, and the mean and 90th-percentile flow magnitude; ``log1p`` of all.

The richer variant (``descriptor="rich"``, issue 21) reads the same DIS flow but from the frame
``gap_s`` seconds earlier (``round(gap_s * fps)`` decoded frames back, by the source's nominal frame
rate; 0.1 s is the previous sampled frame of the daemon's 10 slots per second, so the flow spans what
moved between consecutive sampled frames; counted in decoded frames, not timestamps, so that every
path names the same frame exactly: where a file's own timestamps skip a frame the daemon's previous
sampled frame is 2 or 4 frames back, the predecessor stays ``k``), on a 3x3 grid, plus HOF/MBH inside a tight box around
the region that moves most (flow residual after subtracting the median flow, i.e. the camera's
pan) and the box's normalized centre and size. The box is smoothed over time causally and without
hidden state: its energy map averages the residual of this step's flow with the previous step's
(the flow into the predecessor from *its* predecessor), so the descriptor is a pure function of
three frames (``i - 2k``, ``i - k``, ``i``) and every path computes it bit for bit.

One function serves ``classify``, the daemon (each source keeps its last few grey frames) and the
training cache, so the descriptor a head is trained on is the descriptor it is served. A frame
with no frame before it (the first of a clip or of a stream segment) gets the descriptor of zero
motion; the predecessor of a frame fewer than ``k`` frames into a clip or segment is the first
frame (:func:`predecessors`).
"""

from __future__ import annotations

import re
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Orientation bins of each histogram.
BINS = 8
#: Cells: 2x2 grid + the whole frame.
CELLS = 5
#: HOF, MBH-x, MBH-y histograms per cell, then mean and p90 of the flow magnitude.
DIM = 3 * CELLS * BINS + 2

#: Rich descriptor: HOF/MBH on a 3x3 grid + whole frame, on the moving box's 2x2 quadrants + whole
#: box, the box (centre x, y, width, height, normalized), flow magnitude mean/p90, residual mean/p90 in the box.
GRID3_CELLS = 10
BOX_CELLS = 5
RICH_DIM = 3 * GRID3_CELLS * BINS + 3 * BOX_CELLS * BINS + 4 + 2 + 2
#: Descriptor length of each variant.
DIMS = {"grid2": DIM, "rich": RICH_DIM}
#: Predecessor of the rich variant: one slot of the daemon's 1.2 s / 12-slot window.
RICH_GAP_S = 0.1

Method = Literal["dis_ultrafast", "dis_fast", "farneback"]
Descriptor = Literal["grid2", "rich"]


class MotionSpec(BaseModel):
    """How a head's motion descriptor is computed (recorded in its manifest: a head trained on one
    flow method and size is served exactly that)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Method = Field(description="optical flow: OpenCV DIS (ultrafast/fast preset) or Farneback")
    width: int = Field(gt=7, description="grey image width the flow is computed on")
    height: int = Field(gt=7, description="grey image height")
    descriptor: Descriptor = Field("grid2", description="grid2: HOF/MBH on 2x2 + frame; rich: 3x3 + moving box")
    gap_s: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="predecessor: the frame round(gap_s x nominal fps) decoded frames back (0: the one just before)",
    )
    dim: int = Field(DIM, description="descriptor length")

    @model_validator(mode="before")
    @classmethod
    def _fill_dim(cls, data):
        """A spec without ``dim`` (command line, older manifests) takes its variant's length."""
        if isinstance(data, dict) and "dim" not in data:
            data = {**data, "dim": DIMS.get(data.get("descriptor", "grid2"), DIM)}
        return data

    @model_validator(mode="after")
    def _check_dim(self) -> "MotionSpec":
        """A manifest whose length disagrees with its variant would feed a head the wrong columns."""
        if self.dim != DIMS[self.descriptor]:
            raise ValueError(f"motion descriptor {self.descriptor} has {DIMS[self.descriptor]} values, not {self.dim}")
        return self

    @property
    def id(self) -> str:
        """Short name, e.g. ``dis_ultrafast-160x120`` or ``dis_ultrafast-160x120-rich100ms`` (feature
        cache folders are named by it)."""
        base = f"{self.method}-{self.width}x{self.height}"
        return base if self.descriptor == "grid2" else f"{base}-rich{round(self.gap_s * 1000)}ms"

    def step(self, fps: float) -> int:
        """Decoded frames between a frame and its predecessor at this nominal frame rate (1 when the
        rate is unknown): the same rule in ``classify``, the daemon's sources and the training cache."""
        if self.gap_s <= 0 or not fps > 0:
            return 1
        return max(1, int(self.gap_s * fps + 0.5))


def parse_spec(text: str) -> MotionSpec:
    """``dis_ultrafast-160x120`` or ``dis_ultrafast-160x120-rich100ms`` -> :class:`MotionSpec`
    (command-line form; ``-rich`` alone means the 100 ms predecessor)."""
    try:
        m = re.fullmatch(r"(\w+)-(\d+)[xX](\d+)(?:-rich(\d+ms)?)?", text)
        if m is None:
            raise ValueError(text)
        rich = text.rsplit("-", 1)[-1].startswith("rich")
        gap = int(m.group(4)[:-2]) / 1000 if m.group(4) else RICH_GAP_S
        return MotionSpec(
            method=m.group(1),  # type: ignore[arg-type]
            width=int(m.group(2)),
            height=int(m.group(3)),
            descriptor="rich" if rich else "grid2",
            gap_s=gap if rich else 0.0,
        )
    except ValueError as exc:
        raise ValueError(
            f"motion spec {text!r}: expected METHOD-WxH[-rich[MSms]], METHOD one of {', '.join(Method.__args__)}"
        ) from exc


def predecessors(i: int, step: int, first: int = 0) -> tuple[int | None, int | None]:
    """The frames a descriptor of frame ``i`` reads besides ``i``: its predecessor ``max(i - step,
    first)`` and that one's own (``first``: the clip's or segment's first frame, which has none)."""
    if i <= first:
        return None, None
    p = max(i - step, first)
    return p, (max(p - step, first) if p > first else None)


def frames_needed(indices: np.ndarray, step: int, rich: bool) -> np.ndarray:
    """Sorted frame indices to decode for the motion into each of ``indices``."""
    idx = np.asarray(indices)
    parts = [idx, np.maximum(idx - step, 0)]
    if rich:
        parts.append(np.maximum(idx - 2 * step, 0))
    return np.unique(np.concatenate(parts))


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
        # Rich: 3x3 grid cells (row-major), the field-offset index of each (HOF, MBH-x, MBH-y) pixel.
        rows, cols = np.arange(h) * 3 // h, np.arange(w) * 3 // w
        cell9 = (rows[:, None] * 3 + cols[None, :]).astype(np.int32).ravel()
        self._grid3 = np.concatenate([cell9 + f * 9 for f in range(3)]) * BINS
        self._grid3_px = np.bincount(cell9, minlength=9).astype(np.float64)
        self._xs, self._ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
        self._field4 = (np.arange(3, dtype=np.intp) * 4)[:, None]  # the box's 3 fields x 4 quadrants
        self._energies = _Remembered()

    def grey(self, frame_bgr: np.ndarray) -> np.ndarray:
        """A decoded frame -> the small grey image the flow is computed on (keep it as the next
        frame's predecessor)."""
        return small_grey(frame_bgr, self.spec.width, self.spec.height)

    def flow(self, prev_grey: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """Dense flow ``[H, W, 2]`` (pixels of the small image) from ``prev_grey`` to ``grey``."""
        if self._dis is not None:
            return self._dis.calc(prev_grey, grey, None)
        return cv2.calcOpticalFlowFarneback(prev_grey, grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def describe(
        self, prev_grey: np.ndarray | None, grey: np.ndarray, prev2_grey: np.ndarray | None = None
    ) -> np.ndarray:
        """float32 ``[dim]``: the descriptor of the motion from ``prev_grey`` into ``grey`` (zero
        motion when there is no previous frame). ``prev2_grey``: the predecessor's own predecessor
        (:func:`predecessors`), which the rich variant's box smoothing reads; the 2x2 one ignores it."""
        if prev_grey is None:
            return np.zeros(self.spec.dim, np.float32)
        if self.spec.descriptor == "rich":
            return self._rich(prev2_grey, prev_grey, grey)
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

    def _residual(self, fx: np.ndarray, fy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow minus its median (the camera's pan; the median over every 4th row and column, enough
        to find a pan at a fraction of the cost): the residual's x and y components (float32)."""
        mx = float(np.median(fx[::4, ::4]))
        my = float(np.median(fy[::4, ::4]))
        return cv2.subtract(fx, mx), cv2.subtract(fy, my)

    @staticmethod
    def _energy(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
        """The box's energy map: the residual flow's magnitude, blurred (one definition, so a map
        remembered from the previous step is the map computed afresh, bit for bit)."""
        return cv2.blur(cv2.magnitude(rx, ry), (9, 9))

    def _box(self, energy: np.ndarray) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the box of the region that moves most, energy-weighted centre +- 2
        standard deviations of the above-mean energy (the whole frame when nothing moves)."""
        h, w = energy.shape
        wgt = np.maximum(energy - energy.mean(), 0.0)
        total = float(wgt.sum())
        if total <= 1e-6:
            return 0, 0, w, h
        wx, wy = wgt.sum(0, dtype=np.float64), wgt.sum(1, dtype=np.float64)
        cx, cy = float(wx @ self._xs) / total, float(wy @ self._ys) / total
        sx = float(np.sqrt(max(float(wx @ np.square(self._xs - cx)) / total, 0.0)))
        sy = float(np.sqrt(max(float(wy @ np.square(self._ys - cy)) / total, 0.0)))
        half_x, half_y = max(2.0 * sx, 4.0), max(2.0 * sy, 4.0)
        x0, x1 = int(np.floor(max(cx - half_x, 0.0))), int(np.ceil(min(cx + half_x, float(w))))
        y0, y1 = int(np.floor(max(cy - half_y, 0.0))), int(np.ceil(min(cy + half_y, float(h))))
        return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)

    def _rich(self, prev2: np.ndarray | None, prev: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """The rich descriptor (module docstring), vectorized: the four vector fields (flow, the
        flow's x and y gradients, the residual flow) in one polar conversion, one bincount for the
        3x3 grid and one for the box's quadrants."""
        h, w = grey.shape
        n = h * w
        dx, dy = np.empty((4, h, w), np.float32), np.empty((4, h, w), np.float32)
        fx, fy = cv2.split(self.flow(prev, grey))
        dx[0], dy[0] = fx, fy
        for k, comp in ((1, fx), (2, fy)):  # MBH: the flow's own spatial gradients
            cv2.Sobel(comp, cv2.CV_32F, 1, 0, dst=dx[k], ksize=1)
            cv2.Sobel(comp, cv2.CV_32F, 0, 1, dst=dy[k], ksize=1)
        dx[3], dy[3] = self._residual(fx, fy)
        mag, ang = cv2.cartToPolar(dx.reshape(4 * h, w), dy.reshape(4 * h, w))
        mag, bins = mag.ravel(), (ang.ravel() * np.float32((BINS - 1e-3) / (2 * np.pi))).astype(np.int32)
        energy = self._energies.put(prev, grey, self._energy(dx[3], dy[3]))
        if prev2 is not None:  # causal smoothing over time: this step's residual with the previous step's
            before = self._energies.get(prev2, prev)
            if before is None:  # not described here yet (the first frames, a skipped slot): computed the same way
                before = self._energy(*self._residual(*cv2.split(self.flow(prev2, prev))))
            energy = cv2.addWeighted(energy, 2.0 / 3.0, before, 1.0 / 3.0, 0.0)
        x0, y0, x1, y1 = self._box(energy)
        grid = np.bincount(self._grid3 + bins[: 3 * n], weights=mag[: 3 * n], minlength=27 * BINS).reshape(3, 9, BINS)
        whole = grid.sum(1, keepdims=True) / n
        grid = np.concatenate([grid / self._grid3_px[None, :, None], whole], axis=1)
        # The box: MBH and the HOF of the residual flow (pan removed), on its 2x2 quadrants + the whole box.
        qy = np.arange(y1 - y0) >= (y1 - y0) // 2
        qx = np.arange(x1 - x0) >= (x1 - x0) // 2
        quad = (qy[:, None] * 2 + qx[None, :]).astype(np.intp).ravel()
        sub = (slice(1, 4), slice(y0, y1), slice(x0, x1))
        idx = ((quad[None, :] + self._field4) * BINS + bins.reshape(4, h, w)[sub].reshape(3, -1)).ravel()
        boxh = np.bincount(idx, weights=mag.reshape(4, h, w)[sub].ravel(), minlength=12 * BINS).reshape(3, 4, BINS)
        ny, nx = int(qy.sum()), int(qx.sum())
        qpx = np.array([(qy.size - ny) * (qx.size - nx), (qy.size - ny) * nx, ny * (qx.size - nx), ny * nx], np.float64)
        qpx = np.maximum(qpx, 1.0)
        boxh = np.concatenate([boxh / qpx[None, :, None], boxh.sum(1, keepdims=True) / float(qpx.sum())], axis=1)
        flow_mag = mag[:n]
        res_in = mag[3 * n :].reshape(h, w)[y0:y1, x0:x1].ravel()
        n90, r90 = int(0.9 * (n - 1)), int(0.9 * (res_in.size - 1))
        stats = np.array(
            [
                flow_mag.mean(dtype=np.float64),
                np.partition(flow_mag, n90)[n90],
                res_in.mean(dtype=np.float64),
                np.partition(res_in, r90)[r90],
            ]
        )
        box = np.array([(x0 + x1) / (2 * w), (y0 + y1) / (2 * h), (x1 - x0) / w, (y1 - y0) / h])
        return np.concatenate([np.log1p(np.concatenate([grid.ravel(), boxh.ravel(), stats])), box]).astype(np.float32)

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


class _Remembered:
    """The last few energy maps by the exact grey images they were computed from (held, so an id is
    never reused while remembered): the previous step's map is this step's smoothing input, in
    ``classify``, the training cache and the daemon's worker alike (where a source hands the same
    kept grey images), so the second flow is computed only when the previous step was not described."""

    SIZE = 32  # per estimator: enough for one pending step of each of 32 sources

    def __init__(self) -> None:
        self._maps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def put(self, a: np.ndarray, b: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Remember ``energy`` as the map of the flow from ``a`` to ``b``; returns it."""
        if len(self._maps) >= self.SIZE:
            self._maps.pop(next(iter(self._maps)))
        self._maps[(id(a), id(b))] = (a, b, energy)
        return energy

    def get(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """The map of the flow from ``a`` to ``b`` if it was computed from these very images."""
        hit = self._maps.get((id(a), id(b)))
        return hit[2] if hit is not None and hit[0] is a and hit[1] is b else None


def clip_motion(
    estimator: MotionEstimator,
    frames: dict[int, np.ndarray],
    indices: np.ndarray,
    *,
    greys: bool = False,
    step: int = 1,
) -> np.ndarray:
    """float32 ``[len(indices), dim]``: the motion into each of these decoded frames of a clip
    (``frames``: decoded frames by index, holding each wanted one and those :func:`frames_needed`
    names; frame 0 has none before it). ``step``: :meth:`MotionSpec.step` at the clip's frame rate.
    ``greys``: ``frames`` already holds :meth:`MotionEstimator.grey` images."""
    out = np.empty((len(indices), estimator.spec.dim), np.float32)
    cache: dict[int, np.ndarray] = {}
    rich = estimator.spec.descriptor == "rich"

    def grey(i: int | None) -> np.ndarray | None:
        if i is None:
            return None
        if i not in cache:
            cache[i] = frames[i] if greys else estimator.grey(frames[i])
        return cache[i]

    for k, i in enumerate(indices):
        i = int(i)
        p, p2 = predecessors(i, step)
        out[k] = estimator.describe(grey(p), grey(i), grey(p2) if rich else None)
    return out
