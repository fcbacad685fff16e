"""Editing exported graphs: a torch module exported alone, its names moved under a prefix, the checked, atomic
write of the edited model (the shape correction and the decoding swap splice graphs this way), and the check that
a rewritten graph still gives its original's outputs."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np


def module_graph(module, example, input_name: str, output_names: list[str], opset: int):
    """``module`` (torch, eval mode) traced on ``example`` as an ``onnx.ModelProto``, batch axis dynamic."""
    import onnx
    import torch

    names = [input_name, *output_names]
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module.eval(), (example,), buf, input_names=[input_name], output_names=output_names,
                          dynamic_axes={n: {0: "batch"} for n in names}, opset_version=opset, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def prefix_names(graph, prefix: str, keep: set[str]) -> None:
    """Move every node, tensor and initializer name of ``graph`` under ``prefix``, except the tensors in ``keep``
    (the ones it shares with the graph it is spliced into) and omitted inputs ("")."""
    keep = keep | {""}
    for node in graph.node:
        node.name = prefix + (node.name or node.op_type)
        node.input[:] = [t if t in keep else prefix + t for t in node.input]
        node.output[:] = [t if t in keep else prefix + t for t in node.output]
    for init in graph.initializer:
        init.name = prefix + init.name


def save_checked(model, out: str | Path) -> Path:
    """``onnx.checker`` the model, then write it to ``out`` through a temporary file (never half a model)."""
    import onnx

    onnx.checker.check_model(model)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def verify_rewrite(rewritten: str | Path, original: str | Path, crops: np.ndarray, tolerance: float = 1e-4) -> dict:
    """Run both graphs on ``crops`` (B, S, S, 3): landmarks within ``tolerance`` crop units, covariances within
    ``tolerance`` relative to their largest entry. Returns the largest differences; raises ``ValueError`` past
    them."""
    import onnxruntime as ort

    from star_track.model.meta import INPUT_NAME

    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["landmarks", "covariance"],
                                                                              {INPUT_NAME: images})
           for p in (rewritten, original)]
    (pts, cov), (pts0, cov0) = run
    diffs = {"landmarks": float(np.abs(pts - pts0).max()),
             "covariance_rel": float((np.abs(cov - cov0).max(axis=(-2, -1)) / np.abs(cov0).max(axis=(-2, -1))).max())}
    if not diffs["landmarks"] <= tolerance or not diffs["covariance_rel"] <= tolerance:
        raise ValueError(f"{rewritten}: the rewritten graph does not reproduce {original}: {diffs}")
    return diffs
