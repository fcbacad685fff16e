"""Checkpoint -> ONNX (decoding in the graph) -> TensorRT FP16 engine, each step verified against the last."""
