"""The one place that picks a TFLite interpreter.

ai-edge-litert is preferred and is what ``pip install`` brings (XNNPACK makes the int8 extractor
~11x faster than tflite-runtime on x86, BENCHMARKS.md); tflite-runtime serves where someone installed
it instead (a 32-bit Arm userland, which edgevid does not support: setup.py refuses it unless
EDGEVID_ALLOW_32BIT=1 and the user brings their own wheels, README "Raspberry Pi"); full TensorFlow is
the last resort on a workstation.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ModelError

_CANDIDATES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


@lru_cache(maxsize=None)
def backend(prefer: str | None = None) -> tuple[str, ModuleType]:
    """Return ``(name, module)`` of the first importable runtime; ``prefer`` forces one by name."""
    tried = []
    for name, module in _CANDIDATES:
        if prefer and name != prefer:
            continue
        try:
            return name, importlib.import_module(module)
        except ImportError as exc:
            tried.append(f"{name} ({exc})")
    raise ModelError(
        "no TFLite runtime is installed: install ai-edge-litert (pip install ai-edge-litert), or tflite-runtime"
    )


def can_cut() -> bool:
    """Whether :func:`schema_module` will load, found without importing it: the bindings are a
    687 KB module, and a start that finds its cut model cached never needs them."""
    return importlib.util.find_spec("flatbuffers") is not None


def schema_module() -> ModuleType | None:
    """The TFLite flatbuffer schema bindings edgevid ships (pure Python, so every runtime, the
    tflite-runtime wheel included, gets the cut model); None only if `flatbuffers` is missing."""
    try:
        return importlib.import_module("edgevid.tflite_schema")
    except ImportError:
        return None


@contextmanager
def _quiet_stderr():
    """Hide the runtime's C++ banner ("INFO: Created TensorFlow Lite XNNPACK delegate") on fd 2;
    failures still surface as Python exceptions, reported by the caller."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def make_interpreter(
    model: Path | bytes,
    *,
    num_threads: int | None = None,
    preserve_all_tensors: bool = False,
    runtime: str | None = None,
    what: str = "model",
) -> Any:
    """Load a TFLite model from a path or bytes; any load failure becomes a one-line ModelError."""
    name, module = backend(runtime)
    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    if isinstance(model, (bytes, bytearray)):
        kwargs["model_content"] = bytes(model)
        label = what
    else:
        label = f"{what} {model}"
        if not Path(model).is_file():
            raise ModelError(f"{label}: file not found")
        # Read into memory, never mapped: a new head copied over the file in place (`cp`) would
        # make a mapped model fault (SIGBUS) on its next invoke, and a mapped file's descriptor
        # would outlive a reload's exec.
        try:
            kwargs["model_content"] = Path(model).read_bytes()
        except OSError as exc:
            raise ModelError(f"{label}: cannot be read: {exc.strerror or exc}") from None
    try:
        with _quiet_stderr():
            interpreter = module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{label}: not a TFLite model this runtime ({name}) can load: {first}") from None
    return interpreter


def runtime_used() -> str:
    """The TFLite runtime (name and version) models run on here: what a manifest's ``runtimes``
    records as checked, and what benchmarks report."""
    from importlib.metadata import PackageNotFoundError, version

    name = backend()[0]
    try:
        return f"{name} {version(name if name != 'tensorflow' else 'tensorflow-cpu')}"
    except PackageNotFoundError:
        return name
