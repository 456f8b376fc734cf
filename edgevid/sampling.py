"""Which frames to look at: M indices spread uniformly over a clip or over a time window.

One rule serves the clip path, the daemon and training: a window of ``window_s`` seconds holds M
slots at its segment centres, ``start + (j + 0.5) * window_s / M``, and each slot takes the frame on
screen at that instant (a frame with timestamp ``t`` is shown over ``[t, t + 1/fps)``; equivalently
the frame whose display interval's centre is nearest). Over a whole clip this is exactly
:func:`sample_indices`.
"""

from __future__ import annotations

import numpy as np

from .timing import TIME_EPS

#: Frames per clip in the study: M where none is given (a head's own M is in its manifest, 12 for the bundled one).
DEFAULT_FRAMES = 25


def sample_indices(n_frames: int, m: int = DEFAULT_FRAMES) -> np.ndarray:
    """``m`` frame indices uniformly over ``n_frames``: the centre of each of ``m`` equal segments.

    Sorted, in ``[0, n_frames)``; distinct when ``n_frames >= m``, repeated when the clip is
    shorter (a 15-frame JHMDB clip still yields ``m`` frames, as a head of M = ``m`` expects).
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


def window_indices(
    n_frames: int, fps: float, window_s: float, m: int, start_s: float = 0.0, times: np.ndarray | None = None
) -> np.ndarray:
    """Frame indices of the ``m`` slots of a ``window_s``-second window starting ``start_s`` into a
    clip: what the daemon samples from that stretch of a file.

    ``times``: when each decoded frame starts being shown (s from the first; :func:`edgevid.capture.frame_times`),
    as the daemon times file frames; without it the clip is taken as constant-rate at ``fps``. A
    slot takes the frame whose display centre (``time + 0.5 / fps``) is nearest, ties to the later
    one. Slots past the clip's end take its last frame (callers keep windows inside the clip); with
    ``start_s = 0`` and ``window_s = n_frames / fps`` on a constant-rate clip this equals
    :func:`sample_indices`.
    """
    if n_frames < 1 or m < 1 or not fps > 0 or not window_s > 0:
        raise ValueError(f"need n_frames, m >= 1 and fps, window_s > 0; got {n_frames}, {m}, {fps}, {window_s}")
    instants = start_s + (np.arange(m) + 0.5) * (window_s / m)
    if times is None:
        # Rational form of floor(instant * fps), rounded in the last bit so a slot exactly on a
        # frame boundary belongs to the later frame, as in sample_indices.
        return np.clip(np.floor(instants * fps + TIME_EPS).astype(np.int64), 0, n_frames - 1)
    centres = np.asarray(times, np.float64)[:n_frames] + 0.5 / fps
    later = np.clip(np.searchsorted(centres, instants - TIME_EPS), 0, len(centres) - 1)
    earlier = np.maximum(later - 1, 0)
    take_earlier = (instants - centres[earlier]) < (centres[later] - instants) - TIME_EPS
    return np.where(take_earlier, earlier, later).astype(np.int64)


def clip_duration(n_frames: int, fps: float, times: np.ndarray | None = None) -> float:
    """How long a clip plays: its frames at ``fps``, or to the end of its last frame by its own times."""
    return n_frames / fps if times is None else float(times[n_frames - 1]) + 1.0 / fps


def window_starts(
    n_frames: int, fps: float, window_s: float, hop_s: float, times: np.ndarray | None = None
) -> np.ndarray:
    """Start times (s) of every window of ``window_s`` that fits inside the clip, ``hop_s`` apart
    (the windows a file source publishes); empty when the clip is shorter than one window."""
    duration = clip_duration(n_frames, fps, times)
    if duration + TIME_EPS < window_s:
        return np.zeros(0)
    count = int(np.floor((duration - window_s) / hop_s + TIME_EPS)) + 1
    return np.arange(count) * hop_s


#: Target spacing (s) of the windows ``classify`` averages over a clip for a head fitted on windows.
CLASSIFY_HOP_S = 0.2


def grid_hop(window_s: float, m: int, target_s: float = CLASSIFY_HOP_S) -> float:
    """The multiple of the slot period ``window_s / m`` nearest to ``target_s`` (at least one period):
    windows that far apart share their slots, as the daemon's do, so every slot instant is extracted
    once and a clip costs ``min(m / window_s, fps)`` extractor runs per second, like a live source."""
    if m < 1 or not window_s > 0:
        raise ValueError(f"need m >= 1 and window_s > 0; got {m}, {window_s}")
    slot = window_s / m
    return max(1, round(target_s / slot)) * slot


def clip_windows(
    n_frames: int, fps: float, window_s: float, m: int, hop_s: float | None = None, times: np.ndarray | None = None
) -> tuple[np.ndarray, bool]:
    """Frame indices ``[K, m]`` of the windows that cover a clip at the head's time scale, and
    whether they are real windows: every ``window_s`` window of :func:`window_starts` (``hop_s``
    apart, default :func:`grid_hop`) sampled by :func:`window_indices`. A clip shorter than one
    window gets a single window over the whole clip (:func:`sample_indices`) and ``False``."""
    hop = grid_hop(window_s, m) if hop_s is None else hop_s
    starts = window_starts(n_frames, fps, window_s, hop, times)
    if len(starts) == 0:
        return sample_indices(n_frames, m)[None], False
    return np.stack([window_indices(n_frames, fps, window_s, m, float(s), times) for s in starts]), True
