"""Export step 3 (optional): build the TensorRT engine for an exported ONNX and check it against ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from star_track.bench_engines import synthetic_crops

from .onnx_export import Parity

TRT_TOLERANCE = 5e-3
"""Landmark agreement expected of an FP16 engine vs FP32 ONNX Runtime, in [-1, 1] crop units (0.6 px at 256)."""


def verify_tensorrt(onnx_path: str | Path, max_batch: int = 8, precision: str = "fp16",
                    crops: np.ndarray | None = None, tolerance: float = TRT_TOLERANCE) -> Parity:
    """Build (or reuse from the cache) the TensorRT engine for ``onnx_path`` and compare its outputs with
    ONNX Runtime on CPU for the same crops (default: ``max_batch`` synthetic crops)."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.engines.tensorrt_engine import TensorRTEngine

    trt = TensorRTEngine(onnx_path, max_batch=max_batch, precision=precision)
    ref = OnnxRuntimeEngine(onnx_path, providers=["CPUExecutionProvider"])
    if crops is None:
        crops = synthetic_crops(trt.meta.input_size, batch=max_batch, seed=1)
    got, want = trt.infer(crops), ref.infer(crops)
    return Parity(landmarks=float(np.abs(got[0] - want[0]).max()), covariance=float(np.abs(got[1] - want[1]).max()),
                  heatmaps=None, batch=len(crops), tolerance=tolerance)
