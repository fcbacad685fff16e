"""Editing exported graphs: a torch module exported alone, its names moved under a prefix, and the checked,
atomic write of the edited model (the shape correction and the decoding swap splice graphs this way)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path


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
