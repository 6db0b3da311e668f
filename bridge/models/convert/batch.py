"""Give a converted face model a dynamic batch axis, for batched inference on a GPU (issue 14).

tflite2onnx writes every graph with batch 1: the input and output shapes say 1, and the
detector's and iris model's Reshape nodes carry constant target shapes such as ``[1, -1, 16]``.
ONNX Reshape reads a 0 as "keep this input dimension", so ``[0, -1, 16]`` keeps whatever batch
came in; the declared shapes become a symbolic ``N`` and the stored intermediate shapes are
dropped (runtimes infer them again). Nothing else in these graphs (Conv, PRelu, Add, MaxPool,
Pad with zero batch padding, Transpose, Concat on axis 1) depends on the batch.

The model cache keeps the fetched batch-1 files; ``bridge.models.batching.load_batched`` applies
this at load time when a process batches (``MICROCUE_BATCHING``, on a GPU by default), so the
manifest's hashes always describe what was fetched.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

BATCH_AXIS_NAME = "N"


class BatchConversionError(ValueError):
    """The graph has a batch-dependent node this conversion does not know how to rewrite."""


def dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs, outputs and Reshape targets accept any batch size."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_init = inits.get(node.input[1])
        if shape_init is None:
            raise BatchConversionError(f"Reshape {node.name!r} takes a computed shape; cannot make it batch-free")
        shape = numpy_helper.to_array(shape_init).copy()
        if shape.size == 0 or shape[0] not in (0, 1):
            raise BatchConversionError(f"Reshape {node.name!r} targets {shape.tolist()}, not a batch-first shape")
        shape[0] = 0  # keep the incoming batch
        # The same constant may feed several Reshapes: rewrite it once, under its own name.
        shape_init.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), shape_init.name))
    for value in [*graph.input, *graph.output]:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH_AXIS_NAME
    del graph.value_info[:]
    onnx.checker.check_model(out)
    return out
