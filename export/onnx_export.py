"""Checkpoint -> ONNX: the runtime's :mod:`star_track.onnx_export` (``star-track models import`` uses it too),
re-exported under the name ``python -m export`` and older scripts use."""
from star_track.onnx_export import HEATMAP_TENSOR, INPUT_NAME, OUTPUT_NAMES, Parity, export_onnx, verify_onnx

__all__ = ["HEATMAP_TENSOR", "INPUT_NAME", "OUTPUT_NAMES", "Parity", "export_onnx", "verify_onnx"]
