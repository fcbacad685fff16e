"""export.quantize: the INT8 body of an exported model (calibrated on crops, heads and decoding in float)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from export.quantize import body_nodes, compare, quantize_body  # noqa: E402
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402

from _export_helpers import peaky_onnx_plain  # noqa: E402


def test_the_body_is_quantized_the_heads_are_not_and_the_points_stay(tmp_path):
    src = peaky_onnx_plain()
    out = quantize_body(src, tmp_path / "small-int8.onnx", synthetic_crops(128, batch=16, seed=1), name="small-int8")
    model = onnx.load(str(out))
    quantized = {n.name for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized and body_nodes(model)
    heads = [n for n in model.graph.node if n.op_type == "Conv" and not n.name.startswith(("/net/pre", "/net/hgs",
                                                                                           "/net/features"))]
    assert heads and all(not any("DequantizeLinear" in i or "_quantized" in i for i in n.input[1:2]) for n in heads)
    meta = OnnxRuntimeEngine(out).meta
    assert meta.name == "small-int8" and meta.scheme == "300w68"
    diff = compare(out, src, synthetic_crops(128, batch=4, seed=2))
    assert diff["mean_px"] < 6.0 and np.isfinite(diff["max_cov_rel"])  # random weights: ~3 px; the bundled: 0.2 px
    with pytest.raises(ValueError, match="already quantized"):
        quantize_body(out, tmp_path / "again.onnx", synthetic_crops(128, batch=2))
