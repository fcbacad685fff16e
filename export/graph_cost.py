"""What an exported graph costs: multiply-accumulates per face, counted from the ONNX graph itself."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def conv_macs(onnx_path: str | Path) -> int:
    """Multiply-accumulates per sample of every Conv / MatMul / Gemm node, from the graph's inferred shapes
    (batch taken as 1). Elementwise ops, pooling and the decoding are not counted: they are a few percent."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(onnx_path))
    # Pin the batch axis to 1 so every shape is concrete.
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes.get(node.output[0])
            w = weights.get(node.input[1])
            if out and w:  # w: (cout, cin/groups, kh, kw); out: (1, cout, h, w)
                total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a and out:
                total += int(np.prod(out)) * a[-1]
    return total
