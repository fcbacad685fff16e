"""Append a fitted :class:`~star_track.nn.shape_correction.ShapeCorrection` to an exported model, and check it.

The network's nodes, weights and metadata stay as they are: the graph's ``landmarks`` output is renamed
``landmarks_raw`` and feeds the correction's nodes (exported from the torch module, names prefixed
``shape_correction/``), whose output becomes the new ``landmarks``. ``covariance`` is untouched.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from star_track.model.meta import INPUT_NAME

from .graph_edit import module_graph, prefix_names, save_checked

PREFIX = "shape_correction/"
RAW = "landmarks_raw"


def has_shape_correction(model) -> bool:
    """Whether an ONNX model (``onnx.ModelProto``) already ends in a shape correction."""
    return any(n.name.startswith(PREFIX) for n in model.graph.node)


def _correction_graph(weight: np.ndarray, bias: np.ndarray, eyes: tuple[int, int], opset: int):
    """The correction alone as an ONNX model: ``landmarks_raw`` (B, N, 2) -> ``landmarks``."""
    import torch

    from star_track.nn.shape_correction import ShapeCorrection

    module = ShapeCorrection(torch.from_numpy(weight), torch.from_numpy(bias), eyes)
    return module_graph(module, torch.zeros(1, weight.shape[0] // 2, 2), RAW, ["landmarks"], opset)


def append_correction(src: str | Path, weight: np.ndarray, bias: np.ndarray, eyes: tuple[int, int],
                      out: str | Path) -> Path:
    """Write ``src`` with the correction (``weight`` (2N, 2N), ``bias`` (2N,), outer eye corners ``eyes``)
    appended after its decoding to ``out`` (may equal ``src``; written through a temporary file)."""
    import onnx

    model = onnx.load(str(src))
    if has_shape_correction(model):
        raise ValueError(f"{src} already has a shape correction")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    corr = _correction_graph(np.asarray(weight, np.float32), np.asarray(bias, np.float32), eyes, opset)
    g = model.graph
    for node in g.node:  # the network's landmarks now feed the correction (and whatever else read them)
        node.output[:] = [RAW if o == "landmarks" else o for o in node.output]
        node.input[:] = [RAW if i == "landmarks" else i for i in node.input]
    prefix_names(corr.graph, PREFIX, {RAW, "landmarks"})
    g.node.extend(corr.graph.node)
    g.initializer.extend(corr.graph.initializer)
    outputs = [corr.graph.output[0] if o.name == "landmarks" else o for o in g.output]
    del g.output[:]
    g.output.extend(outputs)
    return save_checked(model, out)


def verify_correction(corrected: str | Path, original: str | Path, weight: np.ndarray, bias: np.ndarray,
                      eyes: tuple[int, int], crops: np.ndarray, tolerance: float = 1e-4) -> dict[str, float]:
    """Run both graphs on ``crops`` (B, S, S, 3): the corrected landmarks must equal the torch module applied
    to the original's, the covariances must be the original's. Returns the largest differences; raises
    ``ValueError`` past ``tolerance`` (crop units)."""
    import onnxruntime as ort
    import torch

    from star_track.nn.shape_correction import ShapeCorrection

    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    run = {}
    for key, path in (("new", corrected), ("old", original)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run[key] = sess.run(["landmarks", "covariance"], {INPUT_NAME: images})
    module = ShapeCorrection(torch.from_numpy(np.asarray(weight)), torch.from_numpy(np.asarray(bias)), eyes)
    with torch.no_grad():
        ref = module(torch.from_numpy(run["old"][0])).numpy()
    diffs = {"landmarks": float(np.abs(run["new"][0] - ref).max()),
             "covariance": float(np.abs(run["new"][1] - run["old"][1]).max()),
             "moved": float(np.abs(run["new"][0] - run["old"][0]).max())}
    if diffs["landmarks"] > tolerance or diffs["covariance"] > 0:
        raise ValueError(f"{corrected}: shape correction check failed: {diffs}")
    return diffs
