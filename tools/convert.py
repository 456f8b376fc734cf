"""Keras head -> TFLite with builtin ops only, checked against Keras on real clips."""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np

from edgevid.runtime import runtime_used  # noqa: F401  (tools import it from here)

from .heads import HeadSpec, build


def to_tflite(models: list, spec: HeadSpec, frames: int, dim: int, classes: int, *, quantize: bool, norm=None) -> bytes:
    """Convert through the export twin (batch 1, no dropout); ``quantize`` = dynamic-range int8 weights.

    Per-channel quantization of dense layers is turned off: TF's default emits FULLY_CONNECTED v12,
    which tflite-runtime 2.14 (the fallback runtime, edgevid.runtime) rejects; per-tensor gives v9, which both run.
    """
    import tensorflow as tf

    twin, parts = build(spec, frames, dim, classes, export=True, norm=norm, members=len(models))
    for part, trained in zip(parts, models, strict=True):
        part.set_weights(trained.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(twin)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    # Keras prints the temporary SavedModel's signatures ("Saved artifact at ...") on stdout: not for users.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def op_versions(model_bytes: bytes) -> dict[str, int]:
    """Builtin op name -> highest version used, to see which runtimes can load the model."""
    from edgevid.runtime import schema_module

    schema = schema_module()
    model = schema.Model.GetRootAsModel(model_bytes, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out: dict[str, int] = {}
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(op, str(op))
        if code.CustomCode():
            name = "CUSTOM:" + code.CustomCode().decode()
        out[name] = max(out.get(name, 0), code.Version())
    return out


def run_tflite(model_bytes: bytes, x: np.ndarray, threads: int = 1) -> tuple[np.ndarray, float]:
    """Probabilities for every row of ``x`` and the median per-clip latency in ms."""
    from edgevid.runtime import make_interpreter

    it = make_interpreter(model_bytes, num_threads=threads, what="head")
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    probs, times = [], []
    for row in x:
        t = time.perf_counter()
        it.set_tensor(i, row[None].astype(np.float32))
        it.invoke()
        probs.append(it.get_tensor(o)[0].copy())
        times.append(time.perf_counter() - t)
    return np.stack(probs), float(np.median(times) * 1e3)


def agreement(reference: np.ndarray, probs: np.ndarray) -> dict:
    """How closely converted probabilities follow the reference (Keras): max |diff| and top-1 agreement."""
    return {
        "max_abs_diff": float(np.abs(reference - probs).max()),
        "top1_agreement": float((reference.argmax(1) == probs.argmax(1)).mean()),
        "n": int(len(probs)),
    }
