"""Rewrite a TFLite classifier so that an inner tensor is its only output.

Reading an intermediate tensor after ``invoke()`` is unsafe (the arena reuses its memory and
XNNPACK partitions may never write it). Cutting the graph at the feature tensor makes the feature
a real output the runtime must produce, drops the classifier ops we would waste time on, and frees
the batch dimension (the original ends in a RESHAPE fixed to batch 1).
"""

from __future__ import annotations

from typing import Any

from .errors import ModelError
from .runtime import schema_module


def cut_at_tensor(model_bytes: bytes, tensor_name: str, *, dynamic_batch: bool = True) -> bytes:
    """Return a model whose single output is ``tensor_name``, with only the ops it depends on."""
    schema = schema_module()
    if schema is None:
        raise ModelError("cannot rewrite the model: the flatbuffers package is not installed (pip install flatbuffers)")
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
