"""MAC counting from an ONNX graph (the per-face cost figure of the model cards and benchmarks)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from export.graph_cost import conv_macs  # noqa: E402


def test_counts_dense_and_depthwise_convolutions_per_sample(tmp_path):
    w1 = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w1")  # dense 3 -> 8, 3x3
    w2 = numpy_helper.from_array(np.zeros((8, 1, 3, 3), np.float32), "w2")  # depthwise, 8 groups
    w3 = numpy_helper.from_array(np.zeros((5, 8), np.float32), "w3")  # (16*..., 8) @ (8, 5)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
         helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1], group=8),
         helper.make_node("Transpose", ["b"], ["c"], perm=[0, 2, 3, 1]),
         helper.make_node("MatMul", ["c", "w3"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 8, 5])], [w1, w2, w3])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    dense = 8 * 8 * 8 * (3 * 3 * 3)  # output elements x (cin/groups * kh * kw)
    depthwise = 8 * 8 * 8 * 9
    matmul = 8 * 8 * 5 * 8
    assert conv_macs(path) == dense + depthwise + matmul  # batch is counted as 1, whatever it is
