"""Which frames to look at: M indices spread uniformly over a clip or a time window."""

from __future__ import annotations

import numpy as np

#: Frames per clip in the study (and the default head's input length).
DEFAULT_FRAMES = 25


def sample_indices(n_frames: int, m: int = DEFAULT_FRAMES) -> np.ndarray:
    """``m`` frame indices uniformly over ``n_frames``: the centre of each of ``m`` equal segments.

    Sorted, in ``[0, n_frames)``; distinct when ``n_frames >= m``, repeated when the clip is
    shorter (a 15-frame JHMDB clip still yields 25 frames, as the head expects).
    """
    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    if m < 1:
        raise ValueError(f"need m >= 1, got {m}")
    # Integer arithmetic: floor((2i + 1) * n / 2m) is exact, with no float rounding at boundaries.
    i = np.arange(m, dtype=np.int64)
    return (2 * i + 1) * n_frames // (2 * m)


def sample_times(start: float, end: float, m: int = DEFAULT_FRAMES) -> np.ndarray:
    """``m`` instants uniformly over ``[start, end)``, the time-based twin of :func:`sample_indices`."""
    if not end > start:
        raise ValueError(f"window end {end} must be after start {start}")
    return start + (np.arange(m) + 0.5) * ((end - start) / m)
