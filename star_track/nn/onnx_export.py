"""Export a :class:`star_track.nn.network.StarNet` to ONNX with decoding inside the graph, and check it.

Owned by the runtime because ``star-track models import`` needs it; it needs the training extra (torch, onnx),
so only that command and ``python -m export`` import this module.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..engines.timing import synthetic_crops
from ..model.meta import HEATMAP_TENSOR, INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ModelMeta
from .network import StarInference, StarNet

__all__ = ["HEATMAP_TENSOR", "INPUT_NAME", "OUTPUT_NAMES", "Parity", "export_onnx", "verify_onnx"]


def export_onnx(net: StarNet, meta: ModelMeta, path: str | Path, opset: int = 17,
                with_heatmaps: bool = False) -> Path:
    """Write ``net`` as ONNX: input ``images`` (B, 3, S, S) float BGR in 0..255, outputs ``landmarks``
    (B, N, 2) and ``covariance`` (B, N, 2, 2) in [-1, 1] crop units (and ``heatmaps`` if asked), dynamic B."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = meta.input_size
    # Always trace the heatmaps output so the last stack's fused heatmap tensor is named HEATMAP_TENSOR in
    # every graph (the FP16 conversion for TensorRT splits the graph there); drop the output if not asked.
    module = StarInference(net.eval(), with_heatmaps=True).eval()
    names = [*OUTPUT_NAMES, HEATMAP_TENSOR]
    dummy = torch.full((1, 3, s, s), 127.0)
    with torch.no_grad(), warnings.catch_warnings():
        # F.instance_norm always uses instance statistics; the exporter warns about "train=True" regardless.
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.functional")
        # The decoding's moment grid is a constant on purpose (star_track.nn.network._moment_grid).
        warnings.filterwarnings("ignore", message="torch.as_tensor results are registered as constants",
                                category=torch.jit.TracerWarning)
        torch.onnx.export(module, (dummy,), str(path), input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]},
                          opset_version=opset, dynamo=False)
    model = onnx.load(str(path))
    if not with_heatmaps:
        kept = [o for o in model.graph.output if o.name != HEATMAP_TENSOR]
        del model.graph.output[:]
        model.graph.output.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@dataclass(frozen=True)
class Parity:
    """Largest absolute differences between two backends on the same crops."""

    landmarks: float
    covariance: float
    heatmaps: float | None
    batch: int
    tolerance: float

    @property
    def ok(self) -> bool:
        """Landmarks agree within ``tolerance`` (covariances are reported, not gated: they scale with it)."""
        return self.landmarks <= self.tolerance

    def __str__(self) -> str:
        hm = "" if self.heatmaps is None else f", heatmaps {self.heatmaps:.2e}"
        verdict = "ok" if self.ok else f"FAILED (> {self.tolerance:g})"
        return (f"max |diff| over {self.batch} crops: landmarks {self.landmarks:.2e}, "
                f"covariance {self.covariance:.2e}{hm} -> {verdict}")


def verify_onnx(onnx_path: str | Path, net: StarNet, crops: np.ndarray | None = None,
                tolerance: float = 1e-4) -> Parity:
    """Run the exported graph in ONNX Runtime (CPU) and ``StarInference`` in PyTorch (FP32, CPU) on the same
    crops and report the largest differences. ``crops`` default to
    :func:`~star_track.engines.timing.synthetic_crops` (batch 3, which
    also exercises the dynamic batch axis)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    size = sess.get_inputs()[0].shape[-1]
    if crops is None:
        crops = synthetic_crops(int(size), batch=3)
    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    outputs = [o.name for o in sess.get_outputs()]
    got = dict(zip(outputs, sess.run(outputs, {INPUT_NAME: images})))
    module = StarInference(net.float().eval(), with_heatmaps=True).eval()
    with torch.no_grad():
        ref = dict(zip([*OUTPUT_NAMES, HEATMAP_TENSOR], (t.numpy() for t in module(torch.from_numpy(images)))))

    def diff(name: str) -> float:
        return float(np.abs(got[name].astype(np.float64) - ref[name]).max())

    return Parity(landmarks=diff("landmarks"), covariance=diff("covariance"),
                  heatmaps=diff(HEATMAP_TENSOR) if HEATMAP_TENSOR in got else None,
                  batch=len(images), tolerance=tolerance)


def rewrite_meta(onnx_path: str | Path, **changes) -> ModelMeta:
    """Replace fields of an exported model's :class:`ModelMeta` (in place, through a temporary file); returns the
    new metadata."""
    import onnx

    path = Path(onnx_path)
    model = onnx.load(str(path))
    entries = [p for p in model.metadata_props if p.key == METADATA_KEY]
    if not entries:
        raise ValueError(f"{path} has no '{METADATA_KEY}' metadata")
    meta = replace(ModelMeta.from_json(entries[0].value), **changes)
    entries[0].value = meta.to_json()
    tmp = path.with_name(f".{path.name}.partial")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return meta
