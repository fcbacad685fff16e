"""Helpers for the export/engine tests: a small STAR network with realistic, peaky heatmaps."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from star_track.engines.timing import synthetic_crops
from star_track.engines.base import to_nchw_float
from star_track.nn.network import NetworkConfig, StarInference, StarNet

SMALL = NetworkConfig(scheme="300w68", num_stacks=2, channels=32, depth=3, input_size=128)


def make_peaky(net: StarNet, crops: np.ndarray, gain: float = 3.0) -> StarNet:
    """Give a random-weight net peaky last-stack heatmaps without training (a few seconds of CPU at most).

    Random weights make the fused heatmaps nearly flat, which would make a parity test meaningless. Each
    last-stack point map becomes sigmoid(gain * (feature_c - q) / std) for one feature channel c, so the
    fused heatmap of landmark k concentrates on the few pixels where channel c responds most.
    """
    feats: dict[str, torch.Tensor] = {}
    hook = net.features[-1].register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
    with torch.no_grad():
        StarInference(net.eval())(torch.from_numpy(to_nchw_float(crops)))
    hook.remove()
    f = feats["f"]
    conv = net.out_pointmaps[-1].conv
    stds = f.transpose(0, 1).flatten(1).std(dim=1)
    live = torch.nonzero(stds > 0.05 * stds.max()).flatten()  # dead ReLU channels would need huge weights
    with torch.no_grad():
        conv.weight.zero_()
        for k in range(conv.out_channels):
            c = int(live[k % len(live)])
            v = f[:, c].flatten()
            s = stds[c]
            conv.weight[k, c] = gain / s
            conv.bias[k] = -gain * torch.quantile(v, 0.98) / s
    return net.eval()


def small_peaky_net(seed: int = 0) -> StarNet:
    """The test network (2 stacks x 32 channels, 128 px, 300W-68) with peaky heatmaps."""
    torch.manual_seed(seed)
    return make_peaky(StarNet(SMALL), synthetic_crops(SMALL.input_size, batch=3, seed=0))


def peakiness(heatmaps: np.ndarray) -> float:
    """Median over maps of max / mean: ~2-4 for random weights, >> 10 for a trained model."""
    hm = np.asarray(heatmaps, np.float64)
    return float(np.median(hm.max(axis=(2, 3)) / np.maximum(hm.mean(axis=(2, 3)), 1e-12)))


@functools.lru_cache(maxsize=None)
def peaky_model() -> tuple[StarNet, Path, Path]:
    """(net, .pt checkpoint, ONNX with heatmaps output), built once per test session in a temp dir."""
    from star_track.nn.onnx_export import export_onnx
    from star_track.nn.checkpoint import meta_for, save_checkpoint

    net = small_peaky_net()
    out = Path(tempfile.mkdtemp(prefix="star-track-export-"))
    meta = meta_for(SMALL, "small-peaky")
    ckpt = save_checkpoint(net, out / "small.pt", meta)
    onnx_path = export_onnx(net, meta, out / "small_hm.onnx", with_heatmaps=True)
    return net, ckpt, onnx_path


@functools.lru_cache(maxsize=None)
def peaky_onnx_plain() -> Path:
    """The same network exported without the heatmaps output (the shipping configuration)."""
    from star_track.nn.onnx_export import export_onnx
    from star_track.nn.checkpoint import meta_for

    net, ckpt, _ = peaky_model()
    return export_onnx(net, meta_for(SMALL, "small-peaky"), ckpt.with_name("small.onnx"))
