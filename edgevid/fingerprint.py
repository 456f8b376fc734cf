"""Extractor identity by measurement: what an extractor file answers on a fixed set of probe images.

A head needs the features it was trained on, not one particular file: the same checkpoint is
published as several files (TensorFlow's archive, Coral's re-conversions) whose bytes differ and
whose features agree within quantization noise, while a different network of the same shape gives
other features. So a head's manifest carries its extractor's features on :func:`probe_images`,
and any file whose features agree within the tolerance is that extractor.

The probes are made with integer arithmetic only (a counter-based hash, box blurs, shapes), so
every platform and numpy version draws the same pixels bit for bit.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: The probe set's name: a manifest records which images its features answer.
PROBE_SET = "edgevid-probes-1"
PROBES = 8

#: Accept an extractor whose every probe feature has at least this cosine with the recorded one.
#: Measured (``python -m tools.fingerprint``, ``benchmarks/extractor-fingerprint.json``): files of
#: the head's checkpoint, on either runtime, stay above 0.99 on every probe; a different network of
#: the same shape stays below 0.85.
DEFAULT_MIN_COSINE = 0.97


def _hash(values: np.ndarray, seed: int) -> np.ndarray:
    """A counter-based integer hash (lowbias32): uint32 in, well-mixed uint32 out."""
    x = (values.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return x.astype(np.uint32)


def _randint(seed: int, shape: tuple[int, ...], high: int) -> np.ndarray:
    """Integers in [0, high) from the hash of a counter: the same on every platform."""
    return (
        (_hash(np.arange(int(np.prod(shape)), dtype=np.uint32), seed) % np.uint32(high)).reshape(shape).astype(np.int64)
    )


def _blur(img: np.ndarray, k: int) -> np.ndarray:
    """Integer box blur of an int64 HxWxC image (edge-padded), k odd: running sums, floor-divided."""
    r = k // 2
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge").cumsum(axis=0)
    p = np.concatenate([np.zeros_like(p[:1]), p])
    out = (p[k:] - p[:-k]) // k
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge").cumsum(axis=1)
    p = np.concatenate([np.zeros_like(p[:, :1]), p], axis=1)
    return (p[:, k:] - p[:, :-k]) // k


def _probe(index: int, size: int) -> np.ndarray:
    """One probe: blurred colour noise at a scale of its own, stripes, discs and boxes over it."""
    seed = 1000 * (index + 1)
    cells = (4, 7, 14, 28)[index % 4]
    low = _randint(seed, (cells, cells, 3), 256)
    rep = -(-size // cells)
    img = np.repeat(np.repeat(low, rep, axis=0), rep, axis=1)[:size, :size]
    img = _blur(img, max(3, (rep // 2) | 1))
    params = _randint(seed + 1, (12, 8), 1 << 16)
    for j, p in enumerate(params):
        colour = p[5:8] % 256
        cx, cy, extent = int(p[0] % size), int(p[1] % size), int(8 + p[2] % (size // 3))
        kind = (j + index) % 3
        rx, ry = (
            (extent, extent)
            if kind == 0
            else (extent, extent * (1 + int(p[3]) % 3) // 2)
            if kind == 1
            else (2 * extent,) * 2
        )
        y0, y1, x0, x1 = max(cy - ry, 0), min(cy + ry + 1, size), max(cx - rx, 0), min(cx + rx + 1, size)
        y, x = np.mgrid[y0:y1, x0:x1]  # only the shape's box: the same pixels as a full-frame mask
        if kind == 0:  # a disc
            mask = (x - cx) ** 2 + (y - cy) ** 2 <= extent**2
        elif kind == 1:  # a box
            mask = np.ones(x.shape, bool)
        else:  # stripes at one of four angles inside a box
            a, b = ((1, 0), (0, 1), (1, 1), (1, -1))[p[3] % 4]
            period = 4 + p[4] % 20
            mask = (x * a + y * b) // period % 2 == 0
        img[y0:y1, x0:x1][mask] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def probe_images(size: int = 224, count: int = PROBES) -> np.ndarray:
    """uint8 RGB ``[count, size, size, 3]``: the probe set :data:`PROBE_SET`."""
    return np.stack([_probe(i, size) for i in range(count)])


class FeatureSource(Protocol):
    """What a fingerprint needs of an extractor (:class:`edgevid.extractor.Extractor`)."""

    path: Path
    sha256: str
    feature_dim: int
    input_size: int
    scale: float
    zero_point: int

    def extract(self, batch: np.ndarray) -> np.ndarray: ...


class Fingerprint(BaseModel):
    """An extractor's features on the probe set, quantized as the extractor gave them."""

    model_config = ConfigDict(extra="forbid")
    probes: Literal["edgevid-probes-1"] = PROBE_SET
    size: int = Field(gt=0, description="probe side in pixels (the extractor's input)")
    features: str = Field(description="base64 of the uint8 features, probes x feature_dim, row-major")
    scale: float = Field(gt=0)
    zero_point: int
    min_cosine: float = Field(DEFAULT_MIN_COSINE, gt=0, le=1, description="each probe's cosine must reach this")

    def array(self) -> np.ndarray:
        """The recorded features, dequantized: float32 ``[probes, D]``."""
        raw = np.frombuffer(base64.b64decode(self.features), np.uint8)
        return (raw.reshape(PROBES, -1).astype(np.float32) - self.zero_point) * np.float32(self.scale)

    @property
    def digest(self) -> str:
        """Short identity of this fingerprint (cache keys)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:24]


def measure(extractor: FeatureSource, min_cosine: float = DEFAULT_MIN_COSINE) -> Fingerprint:
    """The extractor's fingerprint: its features on the probe set."""
    feats = extractor.extract(probe_images(extractor.input_size))
    return Fingerprint(
        size=extractor.input_size,
        features=base64.b64encode(feats.tobytes()).decode(),
        scale=extractor.scale,
        zero_point=extractor.zero_point,
        min_cosine=min_cosine,
    )


class Comparison(BaseModel):
    """How an extractor's probe features compare with a fingerprint."""

    cosines: list[float]
    worst_probe: int
    max_steps: float = Field(description="largest difference in the fingerprint's quantization steps")
    min_cosine: float

    @property
    def ok(self) -> bool:
        return min(self.cosines) >= self.min_cosine

    def describe(self) -> str:
        """One phrase: the worst probe and the tolerance."""
        return (
            f"worst probe {self.worst_probe} at cosine {self.cosines[self.worst_probe]:.4f}, "
            f"{'tolerance' if self.ok else 'needs'} ≥ {self.min_cosine}"
        )


def compare(fingerprint: Fingerprint, extractor: FeatureSource) -> Comparison:
    """Run the probes through ``extractor`` and compare its features with ``fingerprint``'s."""
    want = fingerprint.array()
    if extractor.input_size != fingerprint.size:
        cos = [0.0] * len(want)
        return Comparison(cosines=cos, worst_probe=0, max_steps=float("inf"), min_cosine=fingerprint.min_cosine)
    got_raw = extractor.extract(probe_images(fingerprint.size))
    got = (got_raw.astype(np.float32) - extractor.zero_point) * np.float32(extractor.scale)
    if got.shape != want.shape:
        cos = [0.0] * len(want)
        return Comparison(cosines=cos, worst_probe=0, max_steps=float("inf"), min_cosine=fingerprint.min_cosine)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cos = np.where(norms > 0, (got * want).sum(axis=1) / np.maximum(norms, 1e-12), 0.0)
    return Comparison(
        cosines=[round(float(c), 6) for c in cos],
        worst_probe=int(np.argmin(cos)),
        max_steps=float(np.abs(got - want).max() / fingerprint.scale),
        min_cosine=fingerprint.min_cosine,
    )


def _record(sha256: str, fingerprint: Fingerprint) -> Path:
    from .featuremodel import cut_cache_dir

    return cut_cache_dir() / "checked" / f"{sha256[:32]}-{fingerprint.digest}.json"


def check(fingerprint: Fingerprint, extractor: FeatureSource) -> Comparison:
    """:func:`compare`, remembered: an extractor file found to match (by sha256) is not probed again.

    Only acceptances are kept (in the cache folder, beside the extractor cuts; skipped when it
    cannot be written), so a file that was refused is measured afresh each time."""
    from .store import write_atomic

    record = _record(extractor.sha256, fingerprint)
    try:
        kept = Comparison.model_validate_json(record.read_text())
        if kept.ok and kept.min_cosine == fingerprint.min_cosine:
            return kept
    except (OSError, ValueError):
        pass
    result = compare(fingerprint, extractor)
    if result.ok:
        try:
            write_atomic(record, result.model_dump_json().encode())
        except OSError:
            pass
    return result
