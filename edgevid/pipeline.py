"""One clip through source -> sampler -> extractor -> head, timed per stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .capture import display, frame_times, header_fps, read_clip
from .errors import EdgevidError
from .extractor import Extractor
from .gate import GateSpec, MotionGate
from .head import Head
from .messages import ClipResult, Score, StageTimings
from .motion import MotionEstimator, clip_motion, frames_needed
from .sampling import clip_windows, sample_indices


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[Score]:
    """The k best labels, best first."""
    order = np.argsort(-probs, kind="stable")[: max(1, k)]
    return [Score(label=labels[i], score=round(float(probs[i]), 6)) for i in order]


class ClipClassifier:
    """An extractor and a head that were checked to fit together."""

    def __init__(self, extractor: Extractor, head: Head) -> None:
        self.accepted = head.check_extractor(extractor)
        self.extractor = extractor
        self.head = head
        self.motion = MotionEstimator(head.motion) if head.motion is not None else None

    @property
    def window_s(self) -> float | None:
        """The window a head fitted on fixed windows was trained on; None for a whole-clip head."""
        ts = self.head.manifest.timescale
        return ts.window_s if ts is not None and ts.fit == "windows" else None

    def window_probs(self, path: Path | str, gate: GateSpec | None = None) -> tuple[np.ndarray, bool, "ClipFeatures"]:
        """The head's probabilities ``[K, C]`` for each window ``classify`` averages, whether they are
        real windows (False: one window over a clip shorter than the head's window), and the features
        (their timings; ``head_ms`` holds the head's time; with a ``gate``, ``awake``: which windows
        it lets through, as the daemon's would). Raises EdgevidError on bad input."""
        m, window_s = self.head.frames, self.window_s
        real = True
        gate_grey = MotionGate(gate).grey if gate is not None else None
        times: np.ndarray | None = None
        if window_s is None:
            cf = clip_features(self.extractor, path, m, motion=self.motion, gate_grey=gate_grey)
            windows = np.arange(m)[None]  # positions in cf.feats
        else:
            fps, times = header_fps(path), frame_times(Path(path))
            plan: dict[str, np.ndarray] = {}

            def indices_for(n: int) -> np.ndarray:
                # The clip's own frame times, as a file source goes by (JHMDB: 40 frames = 1.6 s).
                own = times if times is not None and len(times) == n else None
                plan["w"], plan["real"] = (
                    clip_windows(n, fps, window_s, m, times=own) if fps > 0 else (sample_indices(n, m)[None], False)
                )
                return np.unique(plan["w"])

            cf = clip_features(
                self.extractor,
                path,
                None,
                indices_for=indices_for,
                times=times,
                motion=self.motion,
                gate_grey=gate_grey,
            )
            windows = np.searchsorted(cf.indices, plan["w"])
            real = bool(plan["real"])
        if gate is not None and cf.greys is not None:
            cf.awake = gated_windows(gate, cf, windows, times)
        t = time.perf_counter()
        feats = self.head.inputs(self.extractor.dequantize(cf.feats), cf.motion)
        probs = np.stack([self.head.predict(feats[w]) for w in windows])
        cf.timings.head_ms = (time.perf_counter() - t) * 1e3
        return probs, real, cf

    def classify(self, path: Path | str, k: int = 5, gate: GateSpec | None = None) -> ClipResult:
        """Classify one clip; user-facing failures come back as ``ok=False`` with a one-line error.

        A whole-clip head sees M frames over the whole clip. A head fitted on fixed windows sees the
        clip at its own time scale: the mean of its probabilities over the windows the daemon would
        publish across the clip (:func:`edgevid.sampling.clip_windows`; one window over the whole
        clip when the clip is shorter than a window). With a motion ``gate`` (``edgevid classify``
        without ``--no-gate``), the windows it finds still are left out, as the daemon publishes
        them ``idle``; a clip still throughout is ``idle`` with no scores."""
        try:
            probs, _, cf = self.window_probs(path, gate)
            timings = cf.timings
            gating: dict = {}
            if cf.awake is not None:
                gating = {"windows": len(cf.awake), "gated_windows": int((~cf.awake).sum())}
                gating["idle"] = not cf.awake.any()
                if gating["idle"]:
                    return ClipResult(
                        path=display(path), ok=True, frames=cf.n_frames, fps=round(cf.fps, 3), timings=timings, **gating
                    )
                probs = probs[cf.awake]
            t = time.perf_counter()
            probs = np.mean(probs, axis=0)
            timings.head_ms += (time.perf_counter() - t) * 1e3
            timings.total_ms += timings.head_ms
        except EdgevidError as exc:
            return ClipResult(path=display(path), ok=False, error=str(exc))
        except cv2.error as exc:  # a frame OpenCV decoded but cannot process: still bad input
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "error"
            return ClipResult(
                path=display(path), ok=False, error=f"{display(path)}: OpenCV could not process a frame: {reason}"
            )
        top = top_k(probs, self.head.labels, k)
        return ClipResult(
            path=display(path), ok=True, top=top, frames=cf.n_frames, fps=round(cf.fps, 3), timings=timings, **gating
        )


def load_classifier(
    head: Path | None = None, extractor: Path | None = None, model_dir: Path | None = None, threads: int = 1
) -> ClipClassifier:
    """The head (default: bundled) and its extractor (default: the fetched one it names), loaded
    and checked to fit: what ``classify``, ``run`` and ``config check`` all start from."""
    from .store import default_head_dir, extractor_path

    # One head invoke reads one window (~0.05-0.1 ms): a second thread only adds a spinning pool.
    h = Head(head or default_head_dir(), num_threads=1)
    path = extractor or extractor_path(h.manifest.extractor.name, model_dir)
    return ClipClassifier(Extractor(Path(path), num_threads=threads), h)


@dataclass
class ClipFeatures:
    """uint8 features of a clip's sampled frames, in sampling order (repeats allowed)."""

    feats: np.ndarray
    indices: np.ndarray
    n_frames: int
    fps: float
    timings: StageTimings
    views: list[np.ndarray] = field(default_factory=list)  # features of each augmentation view
    motion: np.ndarray | None = None  # float32 [len(indices), motion.DIM]: the motion into each sampled frame
    motion_views: list[np.ndarray] = field(default_factory=list)  # the motion stream of each augmentation view
    #: Small grey image of each decoded frame (by frame index) when a gate or the motion stream made
    #: them; ``awake``: which windows the motion gate let through (``window_probs`` with a gate).
    greys: dict[int, np.ndarray] | None = None
    awake: np.ndarray | None = None


def gated_windows(spec: GateSpec, cf: ClipFeatures, windows: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """bool ``[K]``: the windows (rows of positions in ``cf.indices``) the motion gate lets through,
    a fresh gate seeing each slot frame once, in time order, at its own time (as a file source)."""
    greys, gate = cf.greys or {}, MotionGate(spec)
    frames = np.unique(cf.indices[windows])
    own = times is not None and len(times) == cf.n_frames

    def at(i: int) -> float:
        return float(times[i]) if own and times is not None else i / (cf.fps if cf.fps > 0 else 30.0)

    awake = {int(i): gate.observe(greys[int(i)], at(int(i))).awake for i in frames}
    return np.array([any(awake[int(i)] for i in cf.indices[w]) for w in windows])


def clip_features(
    extractor: Extractor | None,
    path: Path | str,
    m: int | None,
    *,
    indices_for: Callable[[int], np.ndarray] | None = None,
    views: Sequence[Callable[[np.ndarray], np.ndarray]] = (),
    times: np.ndarray | None = None,
    motion: MotionEstimator | None = None,
    gate_grey: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ClipFeatures:
    """Decode, preprocess and extract uniformly sampled frames of a clip: the one feature path of
    ``classify`` and training. ``views`` (training augmentation) are extracted from the same
    decoded frames. ``motion``: also the motion stream into each sampled frame, from the frame
    before it. ``extractor=None``: the motion stream only (``feats`` empty). ``gate_grey``: keep
    each sampled frame's grey image for the motion gate (the motion stream's own, if any)."""
    t0 = time.perf_counter()
    plan: dict[str, np.ndarray] = {}
    # The predecessor rule of the motion stream needs the nominal frame rate (the daemon's sources
    # use the same header rate); the 2x2 descriptor's predecessor is the frame just before: no lookup.
    step = motion.spec.step(header_fps(path)) if motion is not None and motion.spec.gap_s > 0 else 1

    def wanted(n: int) -> np.ndarray:
        idx = indices_for(n) if indices_for else sample_indices(n, m or n)
        plan["idx"] = np.asarray(idx)
        # The motion stream also needs each sampled frame's predecessors.
        return frames_needed(idx, step, motion.spec.descriptor == "rich") if motion is not None else idx

    # Without views the frames are reduced as they are decoded (:class:`_Reducer`): memory stays
    # flat whatever the resolution. (Views need whole frames: training only.)
    grey = motion.grey if motion is not None else gate_grey
    reduce = _Reducer(extractor.input_size if extractor is not None else 0, grey)
    reduced = not views and extractor is not None
    clip = read_clip(path, m, wanted, times, reduce if reduced else None)
    indices = plan["idx"] if motion is not None else clip.indices
    decoded, motion_frames, are_greys = _split_reduced(clip, reduced and grey is not None)
    t1 = time.perf_counter()
    # Repeated indices (clips shorter than m) are preprocessed and extracted once.
    unique, inverse = np.unique(indices, return_inverse=True)
    unique_frames = [decoded[int(i)] for i in unique]
    feats = np.zeros((len(indices), 0), np.uint8)
    t2 = t3 = t1
    extra: list[np.ndarray] = []
    if extractor is not None:
        batch = extractor.preprocess(unique_frames)
        t2 = time.perf_counter()
        feats = extractor.extract(batch)[inverse]
        t3 = time.perf_counter()
        extra = [extractor.extract(extractor.preprocess([view(f) for f in unique_frames]))[inverse] for view in views]
    spent = reduce.spent
    timings = StageTimings(
        decode_ms=(t1 - t0 - spent[0] - spent[1]) * 1e3,
        preprocess_ms=(t2 - t1 + spent[0]) * 1e3,
        extract_ms=(t3 - t2) * 1e3,
        total_ms=(t3 - t0 - spent[1]) * 1e3,
    )
    flow, flow_views = _motion_streams(
        motion, motion_frames, are_greys, decoded, unique, inverse, views, timings, spent[1], step
    )
    greys = motion_frames if are_greys else None
    return ClipFeatures(feats, indices, clip.n_frames, clip.fps, timings, extra, flow, flow_views, greys)


def _split_reduced(clip, pairs: bool) -> tuple[dict, dict, bool]:
    """Frames by index for the extractor and for the motion stream (the same frames, or the
    reducer's (small, grey) pairs split), and whether the motion frames are greys already."""
    if pairs:
        return (
            {int(i): f[0] for i, f in zip(clip.indices, clip.frames)},
            {int(i): f[1] for i, f in zip(clip.indices, clip.frames)},
            True,
        )
    decoded = dict(zip((int(i) for i in clip.indices), clip.frames))
    return decoded, decoded, False


class _Reducer:
    """Each decoded frame reduced at once to the extractor's input (the preprocess resize is then
    an exact copy) and, for the motion stream or the gate, to its small grey image. ``spent``:
    seconds spent reducing for the extractor (counted as preprocessing) and for the grey image."""

    def __init__(self, size: int, grey: Callable[[np.ndarray], np.ndarray] | None) -> None:
        self.size, self.grey = size, grey
        self.spent = [0.0, 0.0]

    def __call__(self, frame: np.ndarray):
        t = time.perf_counter()
        small = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        t_small = time.perf_counter()
        self.spent[0] += t_small - t
        if self.grey is None:
            return small
        grey = self.grey(frame)
        self.spent[1] += time.perf_counter() - t_small
        return small, grey


def _motion_streams(
    motion: MotionEstimator | None,
    frames: dict,
    are_greys: bool,
    decoded: dict,
    unique: np.ndarray,
    inverse: np.ndarray,
    views: Sequence[Callable[[np.ndarray], np.ndarray]],
    timings: StageTimings,
    reducing_s: float,
    step: int = 1,
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The motion stream into each sampled frame (and each view's), timed into ``timings``."""
    if motion is None:
        return None, []
    t = time.perf_counter()
    flow = clip_motion(motion, frames, unique, greys=are_greys, step=step)[inverse]
    timings.motion_ms = (time.perf_counter() - t + reducing_s) * 1e3
    timings.total_ms += timings.motion_ms
    needed = sorted(decoded)
    return flow, [
        clip_motion(motion, {i: view(decoded[i]) for i in needed}, unique, step=step)[inverse] for view in views
    ]
