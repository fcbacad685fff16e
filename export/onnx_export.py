"""Export a :class:`star_track.network.StarNet` to ONNX with decoding inside the graph."""
from __future__ import annotations

from pathlib import Path

import torch

from star_track.model_meta import METADATA_KEY, ModelMeta
from star_track.network import StarInference, StarNet

INPUT_NAME = "images"
OUTPUT_NAMES = ("landmarks", "covariance")


def export_onnx(net: StarNet, meta: ModelMeta, path: str | Path, opset: int = 17,
                with_heatmaps: bool = False) -> Path:
    """Write ``net`` as ONNX: input ``images`` (B, 3, S, S) float BGR in 0..255, outputs ``landmarks``
    (B, N, 2) and ``covariance`` (B, N, 2, 2) in [-1, 1] crop units (and ``heatmaps`` if asked), dynamic B."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = StarInference(net.eval(), with_heatmaps=with_heatmaps).eval()
    s = meta.input_size
    names = list(OUTPUT_NAMES) + (["heatmaps"] if with_heatmaps else [])
    dummy = torch.full((1, 3, s, s), 127.0)
    with torch.no_grad():
        torch.onnx.export(module, (dummy,), str(path), input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *names]},
                          opset_version=opset, dynamo=False)
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
