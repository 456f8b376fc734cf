"""The int8 per-frame feature extractor (MobileNet pre-logits, e.g. 1280-d for MobileNetV2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from .errors import ModelError
from .featuremodel import cut_at_tensor, load_cut, save_cut
from .runtime import can_cut, make_interpreter
from .store import EXTRACTORS

#: Frames per invoke at most. The interpreter's arena grows with the batch (about 3 MB of
#: activations per MobileNetV2 frame): a long clip's frames in one invoke would take hundreds of MB.
MAX_BATCH = 16

#: Batches smaller than this run on a one-thread interpreter. A one-frame invoke on a thread pool
#: pays for the pool's second thread spinning after every invoke (the daemon's single live source
#: invokes one frame at a time, 10 times a second): measured, the daemon used ~17 ms CPU per second
#: more on two threads than on one for the same work, with identical features (BENCHMARKS.md).
MIN_POOL_BATCH = 2

#: MobileNet V2 and V3 name their pre-logits tensor ``<Net>/Logits/AvgPool``.
FEATURE_TENSOR_SUFFIX = "/Logits/AvgPool"


def _find_feature_tensor(interpreter, wanted: str | None, path: Path) -> dict:
    for detail in interpreter.get_tensor_details():
        name = detail["name"]
        if (wanted and name == wanted) or (not wanted and name.endswith(FEATURE_TENSOR_SUFFIX)):
            return detail
    raise ModelError(
        f"extractor {path}: no tensor named {wanted or '*' + FEATURE_TENSOR_SUFFIX!r} (not a MobileNet classifier?)"
    )


def preprocess(frame_bgr: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize to ``size``x``size`` and BGR->RGB, as the study did (no crop).

    Resizing first makes the channel swap touch 224x224 pixels instead of the full frame; a swap
    commutes with a per-channel resize, so the result is identical.
    """
    resized = cv2.resize(frame_bgr, (size, size), interpolation=cv2.INTER_LINEAR)
    # cvtColor writing straight into the batch is 3x faster than a numpy channel flip + copy.
    if out is None:
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=out)
    return out


class Extractor:
    """Runs a uint8 MobileNet cut at its pre-logits tensor, batched.

    With ``num_threads`` > 1 and the cut model, it holds two interpreters of the same model: one
    thread for a batch of one frame, ``num_threads`` for larger batches (:data:`MIN_POOL_BATCH`);
    each is built on first use. The features do not depend on the thread count.

    The features are returned as the raw uint8 quantized values (compact to cache); ``scale`` and
    ``zero_point`` turn them into floats, see :meth:`dequantize`.
    """

    def __init__(
        self,
        path: Path,
        *,
        num_threads: int | None = None,
        feature_tensor: str | None = None,
        runtime: str | None = None,
    ) -> None:
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"extractor {self.path}: file not found (run `edgevid models fetch`)") from None
        except OSError as exc:
            raise ModelError(f"extractor {self.path}: cannot read: {exc.strerror}") from None
        self.sha256 = hashlib.sha256(data).hexdigest()
        # Which network a file is, its features say (a head's fingerprint: edgevid.fingerprint); its
        # bytes only matter when it cannot be read, to tell a damaged download from another file.
        known = next((e for e in EXTRACTORS.values() if e.filename == self.path.name), None)
        damaged = (
            (
                f"sha256 {self.sha256[:12]}… is not that of {known.name} (corrupt or altered file; fetch it again with "
                "`edgevid models fetch`): "
            )
            if known is not None and self.sha256 not in known.sha256
            else ""
        )
        try:
            self._load(data, num_threads, feature_tensor, runtime)
        except ModelError as exc:
            raise ModelError(
                f"extractor {self.path}: {damaged}{str(exc).removeprefix(f'extractor {self.path}: ')}"
            ) from None
        except Exception as exc:  # a damaged flatbuffer fails anywhere in parsing: one line, not a traceback
            raise ModelError(
                f"extractor {self.path}: {damaged}not a valid TFLite model ({type(exc).__name__}: {str(exc)[:80]})"
            ) from None

    def _load(self, data: bytes, num_threads: int | None, feature_tensor: str | None, runtime: str | None) -> None:
        # Safe feature read: a graph cut at the feature tensor when we can rewrite flatbuffers,
        # otherwise the full model with every tensor preserved (slower, one frame per invoke). The
        # full model is loaded once either way: for its metadata, and as the fallback interpreter.
        self.batched = can_cut()
        what = f"extractor {self.path}"
        self._threads = num_threads
        self._pool: dict[int | None, list] = {}  # threads -> [interpreter, its batch size]
        cached = load_cut(self.sha256, feature_tensor) if self.batched else None
        if cached is not None:  # the cut made before: one interpreter, no flatbuffer rewrite (start-up)
            self._make = lambda threads: make_interpreter(cached, num_threads=threads, runtime=runtime, what=what)
            self._interpreter = self._pick(1)
            self._use(self._interpreter.get_output_details()[0])
            return
        full = make_interpreter(
            data, num_threads=num_threads, preserve_all_tensors=not self.batched, runtime=runtime, what=what
        )
        detail = _find_feature_tensor(full, feature_tensor, self.path)
        if self.batched:
            cut = cut_at_tensor(data, detail["name"])
            save_cut(self.sha256, feature_tensor, cut)
            self._make = lambda threads: make_interpreter(cut, num_threads=threads, runtime=runtime, what=what)
            self._interpreter = self._pick(1)
            self._use(self._interpreter.get_output_details()[0])
        else:  # one frame per invoke on the full model, as many threads as asked
            self._interpreter = full
            self._use(detail)

    def _use(self, detail: dict) -> None:
        """Take the feature tensor's name, size and quantization, and the input's, from the interpreter that runs."""
        self.feature_tensor: str = detail["name"]
        self.feature_dim = int(np.prod(detail["shape"][1:]))
        self.scale, self.zero_point = (float(detail["quantization"][0]), int(detail["quantization"][1]))
        self._output_index = detail["index"]
        # An int8 feature tensor (Keras/MLIR conversions) is served as uint8 with the zero point
        # moved by 128: the same real values, exactly (q + 128 is a flip of the top bit).
        self._signed = detail["dtype"] == np.int8
        if self._signed:
            self.zero_point += 128
        elif detail["dtype"] != np.uint8:
            raise ModelError(
                f"extractor {self.path}: feature tensor {self.feature_tensor!r} is {np.dtype(detail['dtype']).name}, "
                "expected a quantized uint8 or int8 tensor"
            )
        input_detail = self._interpreter.get_input_details()[0]
        if input_detail["dtype"] != np.uint8:
            raise ModelError(f"extractor {self.path}: expected a uint8 input, got {input_detail['dtype'].__name__}")
        self.input_size = int(input_detail["shape"][1])
        self._input_index = input_detail["index"]

    def _pick(self, frames: int):
        """The cut model's interpreter for an invoke of ``frames`` frames, built on first use and
        resized when its batch changes: one thread below :data:`MIN_POOL_BATCH`, else ``num_threads``
        (each interpreter keeps its own input size, so alternating batch sizes do not resize both)."""
        threads = 1 if frames < MIN_POOL_BATCH else self._threads
        if threads not in self._pool:
            self._pool[threads] = [self._make(threads), 1]
        entry = self._pool[threads]
        if entry[1] != frames:
            entry[0].resize_tensor_input(self._input_index, [frames, self.input_size, self.input_size, 3])
            entry[0].allocate_tensors()
            entry[1] = frames
        return entry[0]

    @property
    def id(self) -> str:
        """Short identity used in manifests and messages."""
        return self.sha256[:12]

    def preprocess(self, frames_bgr: list[np.ndarray]) -> np.ndarray:
        """Frames as decoded by OpenCV -> one uint8 RGB batch ready for :meth:`extract`."""
        batch = np.empty((len(frames_bgr), self.input_size, self.input_size, 3), np.uint8)
        for i, frame in enumerate(frames_bgr):
            preprocess(frame, self.input_size, batch[i])
        return batch

    def extract(self, batch: np.ndarray) -> np.ndarray:
        """uint8 RGB ``[N, S, S, 3]`` -> uint8 features ``[N, D]`` (one invoke when batched)."""
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3) or batch.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 [N,{self.input_size},{self.input_size},3], got {batch.dtype} {batch.shape}"
            )
        n = batch.shape[0]
        out = np.empty((n, self.feature_dim), np.uint8)
        if n == 0:
            return out
        step = min(n, MAX_BATCH) if self.batched else 1
        for start in range(0, n, step):
            step = min(step, n - start)  # the last, shorter chunk: a smaller input, not padding
            interpreter = self._pick(step) if self.batched else self._interpreter
            interpreter.set_tensor(self._input_index, batch[start : start + step])
            interpreter.invoke()
            got = interpreter.get_tensor(self._output_index).reshape(step, -1)
            out[start : start + step] = got.view(np.uint8) ^ 0x80 if self._signed else got
        return out

    def dequantize(self, features: np.ndarray) -> np.ndarray:
        """uint8 features -> float32 in the model's real units (MobileNetV2: [0, 6])."""
        return (features.astype(np.float32) - self.zero_point) * np.float32(self.scale)
