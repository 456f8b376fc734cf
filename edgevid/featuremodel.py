"""Rewrite a TFLite classifier so that an inner tensor is its only output.

Reading an intermediate tensor after ``invoke()`` is unsafe (the arena reuses its memory and
XNNPACK partitions may never write it). Cutting the graph at the feature tensor makes the feature
a real output the runtime must produce, drops the classifier ops we would waste time on, and frees
the batch dimension (the original ends in a RESHAPE fixed to batch 1).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .errors import ModelError
from .runtime import schema_module


def cut_cache_dir() -> Path:
    """``$EDGEVID_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgevid``: derived files, safe to delete."""
    if os.environ.get("EDGEVID_CACHE_DIR"):
        return Path(os.environ["EDGEVID_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgevid"


def _cut_file(source_sha256: str, tensor: str | None) -> Path:
    key = hashlib.sha256(f"{source_sha256}:{tensor or ''}".encode()).hexdigest()[:24]
    return cut_cache_dir() / f"cut-{key}.tflite"


def load_cut(source_sha256: str, tensor: str | None) -> bytes | None:
    """The cut made earlier from the model with this sha256 (rewriting costs ~0.2-0.5 s a start),
    if it is there and matches the sha256 recorded beside it; else None (cut again)."""
    path = _cut_file(source_sha256, tensor)
    try:
        data, recorded = path.read_bytes(), path.with_suffix(".sha256").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return data if hashlib.sha256(data).hexdigest() == recorded else None


def save_cut(source_sha256: str, tensor: str | None, data: bytes) -> None:
    """Keep a cut for the next start; a cache that cannot be written (read-only home) is skipped."""
    from .store import write_atomic

    path = _cut_file(source_sha256, tensor)
    try:
        write_atomic(path, data)
        write_atomic(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
    except OSError:
        pass


def cut_at_tensor(model_bytes: bytes, tensor_name: str, *, dynamic_batch: bool = True) -> bytes:
    """Return a model whose single output is ``tensor_name``, with only the ops it depends on."""
    schema = schema_module()
    if schema is None:
        raise ModelError("cannot rewrite the model: no TFLite schema module (install ai-edge-litert)")
    import flatbuffers

    model: Any = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    graph = model.subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else t.name for t in graph.tensors]
    if tensor_name not in names:
        raise ModelError(f"the model has no tensor named {tensor_name!r}")
    target = names.index(tensor_name)

    # Walk back from the target: keep only the ops whose outputs it depends on.
    producer = {out: i for i, op in enumerate(graph.operators) for out in op.outputs}
    needed, keep, stack = {target}, set(), [target]
    while stack:
        op_index = producer.get(stack.pop())
        if op_index is None or op_index in keep:
            continue
        keep.add(op_index)
        for tensor in graph.operators[op_index].inputs:
            if tensor >= 0 and tensor not in needed:
                needed.add(tensor)
                stack.append(tensor)
    graph.operators = [op for i, op in enumerate(graph.operators) if i in keep]
    graph.outputs = [target]

    # Drop the weights of the classifier we cut away (unless a kept tensor shares the buffer).
    used_buffers = {graph.tensors[t].buffer for t in needed}
    for i, tensor in enumerate(graph.tensors):
        if i not in needed and tensor.buffer not in used_buffers and tensor.buffer < len(model.buffers):
            model.buffers[tensor.buffer].data = None

    if dynamic_batch:
        for index in list(graph.inputs) + [target]:
            tensor = graph.tensors[index]
            signature = list(tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape)
            signature[0] = -1
            tensor.shapeSignature = signature

    builder = flatbuffers.Builder(len(model_bytes))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
