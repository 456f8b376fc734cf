"""The sequence head: M features in, class probabilities out (a TFLite GRU by default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import fingerprint
from .errors import ModelError
from .fingerprint import FeatureSource
from .manifest import load_manifest, verify_file
from .runtime import make_interpreter
from .store import EXTRACTORS


def read_labels(path: Path) -> list[str]:
    """One label per line; blank lines are an error (they would shift every class after them)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read labels: {exc}") from None
    labels = [line.strip() for line in lines]
    if not labels or any(not label for label in labels):
        raise ModelError(f"{path}: labels file must have one non-empty label per line")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ModelError(f"{path}: each label must appear once, repeated: {', '.join(repeated)}")
    return labels


def apply_temperature(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """``softmax(log(p) / T)`` over the last axis: a head's averaged probabilities rescaled so a
    score of 0.8 is right about 80 % of the time (T fitted on validation; None or 1: unchanged)."""
    if temperature is None or temperature == 1.0:
        return probs
    logits = np.log(np.maximum(probs.astype(np.float64), 1e-12)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class Head:
    """A TFLite head checked against its manifest: shapes, label count and file hashes."""

    def __init__(self, source: Path, *, num_threads: int | None = None, runtime: str | None = None) -> None:
        self.manifest, self.folder = load_manifest(source)
        m = self.manifest
        head_path = verify_file(m.head, self.folder)
        labels_path = verify_file(m.labels, self.folder)
        self.labels = read_labels(labels_path)
        self.path = head_path
        self._interpreter = make_interpreter(head_path, num_threads=num_threads, runtime=runtime, what="head")
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        want = (m.frames, m.input_dim)
        if tuple(inp["shape"][1:]) != want:
            raise ModelError(
                f"head {head_path}: input shape {list(inp['shape'])} does not match the manifest's [1, {m.frames}, "
                f"{m.input_dim}]"
            )
        if int(out["shape"][-1]) != len(self.labels):
            raise ModelError(
                f"{labels_path}: {len(self.labels)} labels but head {head_path.name} outputs {int(out['shape'][-1])} "
                "classes"
            )
        self._input_index = inp["index"]
        self._output_index = out["index"]
        self.id = m.head.sha256[:12]
        self.temperature = m.calibration.temperature if m.calibration else None

    @property
    def frames(self) -> int:
        return self.manifest.frames

    @property
    def feature_dim(self) -> int:
        """The extractor's feature length (the appearance stream)."""
        return self.manifest.feature_dim

    @property
    def input_dim(self) -> int:
        """Per-frame input: appearance features, then the motion descriptor when the head reads it."""
        return self.manifest.input_dim

    @property
    def motion(self):
        """The head's :class:`~edgevid.motion.MotionSpec`, or None for an appearance-only head."""
        return self.manifest.motion

    def check_extractor(self, extractor: FeatureSource) -> str:
        """Refuse an extractor whose features the head was not trained on; say how it was accepted.

        The file the head was checked with is accepted by its sha256. Any other file is accepted
        when its features on the probe images agree with the manifest's fingerprint (another
        conversion of the same checkpoint, the other runtime's arithmetic): what matters is the
        features, not the bytes. The result is remembered per file, so the probes run once."""
        m = self.manifest
        name, sha256 = str(extractor.path), extractor.sha256
        if extractor.feature_dim != m.feature_dim:
            raise ModelError(
                f"head {self.path}: expects {m.feature_dim}-d features ({m.extractor.name}) but extractor {name} gives "
                f"{extractor.feature_dim}-d"
            )
        if sha256 in m.extractor.sha256:
            return "the file the head was checked with"
        fp = m.extractor.fingerprint
        if fp is None:
            known = EXTRACTORS.get(m.extractor.name)
            if known is not None and sha256 in known.sha256:
                # An older head without a fingerprint meets another published file of its extractor.
                raise ModelError(
                    f"head {self.path}: checked only with extractor file {m.extractor.sha256[0][:12]}… of "
                    f"{m.extractor.name}; {name} ({sha256[:12]}…) is another published file of it whose "
                    f"features were not compared: install the checked file with `edgevid models fetch --from DIR`"
                )
            raise ModelError(
                f"head {self.path}: trained on extractor {m.extractor.name} ({m.extractor.sha256[0][:12]}…), "
                f"but {name} has sha256 {sha256[:12]}…"
            )
        result = fingerprint.check(fp, extractor)
        if not result.ok:
            raise ModelError(
                f"head {self.path}: extractor {name} (sha256 {sha256[:12]}…) does not give the features of "
                f"{m.extractor.name} the head was trained on: {result.describe()} on edgevid's probe images "
                f"(another network or a damaged file); install the head's extractor with `edgevid models fetch`"
            )
        return f"features match {m.extractor.name}'s ({result.describe()})"

    def inputs(self, features: np.ndarray, motion: np.ndarray | None) -> np.ndarray:
        """The head's per-frame input from its streams: dequantized features ``[..., D]`` and, if
        the head reads it, the motion descriptors ``[..., DIM]``, concatenated."""
        if self.manifest.motion is None:
            return features
        if motion is None:
            raise ValueError("this head reads the motion stream: pass the motion descriptors")
        return np.concatenate([features, motion.astype(np.float32, copy=False)], axis=-1)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """float32 ``[M, D]`` dequantized features (then the motion descriptor, for a head that
        reads it: :meth:`inputs`) -> probabilities ``[C]``, calibrated by the manifest's temperature
        when it has one."""
        if features.shape != (self.frames, self.input_dim):
            raise ValueError(f"expected features [{self.frames}, {self.input_dim}], got {list(features.shape)}")
        self._interpreter.set_tensor(self._input_index, features[None].astype(np.float32, copy=False))
        self._interpreter.invoke()
        return apply_temperature(self._interpreter.get_tensor(self._output_index)[0].copy(), self.temperature)
