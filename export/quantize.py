"""INT8 network body for CPUs: static quantization of an exported model's backbone, checked against the float one.

The body (stem, hourglass, feature blocks: nodes under ``/net/pre``, ``/net/hgs``, ``/net/features``) runs in
8 bits: unsigned activations, per-channel signed weights, ranges from real face crops (ONNX Runtime's static
quantizer, QDQ format, min/max calibration). The heads that draw the heatmaps, the in-graph decoding, the shape
correction and the covariances stay in float: the landmarks are sub-pixel averages over the heatmaps, which 8-bit
heatmaps would quantize. On a CPU with 8-bit dot products (AVX-512 VNNI, AVX-VNNI; ARM's dot product) ONNX
Runtime runs the body's convolutions as integer kernels.

Measured on the 2-core AMD EPYC (AVX-512 VNNI), 1 thread, held-out 300W faces framed from their labels
(``python -m benchmarks.w300``, ``python -m benchmarks.speed --peer-only``): see README, "Models".
A TensorRT engine is built from the float model (its FP16 is the GPU's fast path), not from this one.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

BODY_PREFIXES = ("/net/pre", "/net/hgs", "/net/features")
"""Name prefixes of the exported network's body nodes (``star_track.nn.network``'s module names)."""


def body_nodes(model) -> list[str]:
    """Names of the body's nodes in an ``onnx.ModelProto`` (empty for a graph not exported from StarNet)."""
    return [n.name for n in model.graph.node if n.name.startswith(BODY_PREFIXES)]


def quantizable_body(src: Path) -> list[str]:
    """The body's node names of the model at ``src``; ``ValueError`` when it has none or is already quantized
    (checked before the calibration crops are read)."""
    import onnx

    model = onnx.load(str(src))
    nodes = body_nodes(model)
    if not nodes:
        raise ValueError(f"{src}: no network body to quantize (nodes named {', '.join(BODY_PREFIXES)}...)")
    if any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in model.graph.node):
        raise ValueError(f"{src} is already quantized")
    return nodes


def quantize_body(src: Path, out: Path, crops: np.ndarray, name: str | None = None) -> Path:
    """Write ``src`` with its body in INT8 to ``out``, ranges calibrated on ``crops`` ((B, S, S, 3) uint8 BGR face
    crops at the model's input size), the metadata kept (``name``: a new model name in it)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from star_track.engines.base import to_nchw_float
    from star_track.model.meta import INPUT_NAME
    from star_track.nn.onnx_export import rewrite_meta

    nodes = quantizable_body(src)
    model = onnx.load(str(src))

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self._feed = iter([{INPUT_NAME: to_nchw_float(crops[i:i + 1])} for i in range(len(crops))])

        def get_next(self) -> dict | None:
            return next(self._feed, None)

    staged = Path(out).with_name(f".{Path(out).name}.partial")  # the model lands whole or not at all
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(staged), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes)
        quantized = onnx.load(str(staged))
        del quantized.metadata_props[:]
        quantized.metadata_props.extend(model.metadata_props)
        onnx.save(quantized, str(staged))
        if name is not None:
            rewrite_meta(staged, name=name)
        _streamline(staged, crops[:8])
        staged.replace(out)
    finally:
        staged.unlink(missing_ok=True)
    return Path(out)


def compare(quantized: Path, src: Path, crops: np.ndarray) -> dict[str, float]:
    """Mean and largest landmark difference (crop pixels) and the largest relative covariance difference of the
    quantized model from its source on ``crops``."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine

    a, b = OnnxRuntimeEngine(src), OnnxRuntimeEngine(quantized)
    (ma, ca), (mb, cb) = a.infer(crops), b.infer(crops)
    px = np.linalg.norm(ma - mb, axis=-1) * a.meta.input_size / 2
    rel = np.abs(ca - cb).max(axis=(-1, -2)) / np.abs(ca).max(axis=(-1, -2))
    return {"mean_px": float(px.mean()), "max_px": float(px.max()), "max_cov_rel": float(rel.max())}


def _streamline(model: Path, crops: np.ndarray) -> None:
    """Give a freshly quantized ``model`` :mod:`export.streamline`'s exact clean-ups, checked on ``crops``."""
    from .graph_edit import verify_rewrite
    from .streamline import streamline

    tmp = model.with_name(f"{model.name}.streamlined")
    try:
        streamline(model, tmp)
        verify_rewrite(tmp, model, crops)
        tmp.replace(model)
    finally:
        tmp.unlink(missing_ok=True)
