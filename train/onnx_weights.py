"""Rebuild a trainable :class:`~star_track.nn.network.StarNet` from one of our exported ONNX models.

The bundled ``.onnx`` files are what a checkout has of earlier training runs (checkpoints are never committed),
so a later training stage (e.g. the 300W fine-tune in :mod:`train.ship`) can start from the shipped weights.

The exporter folds every BatchNorm that directly follows a convolution into that convolution's weights and
bias (the graph then names them ``onnx::Conv_*``). Those BatchNorms are restored as *identities that keep
training well behaved*: running mean/variance are set to the statistics of their input on real face crops and
the affine parameters to undo them (``weight = sqrt(var + eps)``, ``bias = mean``). In eval mode the network is
then exactly the ONNX function; in train mode batch statistics are close to the running ones, so fine-tuning
starts from the shipped model instead of a perturbed one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from star_track.nn.checkpoint import write_checkpoint
from star_track.model.meta import METADATA_KEY, ModelMeta
from star_track.nn.network import NetworkConfig, StarNet, normalize_input


def _node_module(node_name: str) -> str:
    """``/net/hgs.0/up1/conv1/conv/Conv`` -> ``hgs.0.up1.conv1.conv`` (the Conv module's path in StarNet)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    if parts and parts[0] == "net":
        parts = parts[1:]
    # torch names nested Sequential children "<parent>.<i>" inside the parent's scope: keep the last component
    # of each scope (``pre/pre.0/conv`` -> ``pre.0.conv``).
    out: list[str] = []
    for p in parts:
        if out and p.startswith(out[-1] + "."):
            out[-1] = p
        else:
            out.append(p)
    return ".".join(out)


def network_from_onnx(path: str | Path, crops: np.ndarray) -> tuple[StarNet, ModelMeta]:
    """The ONNX model at ``path`` as an eval-mode StarNet; ``crops`` (B, S, S, 3) uint8 BGR face crops set the
    statistics of the BatchNorms that the exporter folded away."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: not a star-track model (no '{METADATA_KEY}' metadata)")
    meta = ModelMeta.from_json(props[METADATA_KEY])
    net = StarNet(NetworkConfig.from_dict(meta.network)).eval()
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}

    state = net.state_dict()
    loaded: set[str] = set()
    for name, value in inits.items():
        key = name[4:] if name.startswith("net.") else name
        if key in state and state[key].shape == value.shape:
            state[key] = value
            loaded.add(key)
    modules = dict(net.named_modules())
    bn_bias: dict[str, torch.Tensor] = {}  # folded BNs that carry a bias-free conv's folded bias
    for node in model.graph.node:
        if node.op_type != "Conv" or not any(i.startswith("onnx::") for i in node.input[1:]):
            continue
        path_ = _node_module(node.name)
        conv = modules.get(path_)
        if not isinstance(conv, torch.nn.Conv2d):
            raise ValueError(f"{path}: cannot map folded conv {node.name} onto the network ({path_})")
        state[f"{path_}.weight"] = inits[node.input[1]]
        loaded.add(f"{path_}.weight")
        if conv.bias is not None:
            state[f"{path_}.bias"] = inits[node.input[2]]
            loaded.add(f"{path_}.bias")
        else:  # a bias-free conv inside a Sequential: its folded BN is the next layer, which takes the bias
            parent, _, index = path_.rpartition(".")
            bn_name = f"{parent}.{int(index) + 1}"
            if not isinstance(modules.get(bn_name), torch.nn.BatchNorm2d):
                raise ValueError(f"{path}: no BatchNorm after bias-free conv {path_}")
            bn_bias[bn_name] = inits[node.input[2]]

    bns = {n: m for n, m in modules.items() if isinstance(m, torch.nn.BatchNorm2d)}
    folded_bns = [n for n in bns if f"{n}.weight" not in loaded]
    for n in folded_bns:  # exact identity first, so statistics measured below see the ONNX function
        state[f"{n}.weight"] = torch.ones_like(state[f"{n}.weight"])
        state[f"{n}.bias"] = bn_bias.get(n, torch.zeros_like(state[f"{n}.bias"]))
        state[f"{n}.running_mean"] = torch.zeros_like(state[f"{n}.running_mean"])
        state[f"{n}.running_var"] = torch.full_like(state[f"{n}.running_var"], 1.0 - bns[n].eps)
        loaded |= {f"{n}.weight", f"{n}.bias", f"{n}.running_mean", f"{n}.running_var"}
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")
               and k in dict(net.named_parameters())]
    if missing:
        raise ValueError(f"{path}: {len(missing)} weights not found in the graph, e.g. {missing[:3]}")
    net.load_state_dict(state)

    sums: dict[str, list[torch.Tensor]] = {}
    hooks = [bns[n].register_forward_hook(
        lambda m, inp, out, n=n: sums.setdefault(n, []).append(
            torch.stack([inp[0].mean((0, 2, 3)), (inp[0] ** 2).mean((0, 2, 3))]))) for n in folded_bns]
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2))).float()
        for i in range(0, len(x), 16):
            net(normalize_input(x[i:i + 16]))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for n in folded_bns:
            m1, m2 = torch.stack(sums[n]).mean(0)
            var = (m2 - m1 ** 2).clamp_min(1e-6)
            bn = bns[n]
            bn.running_mean.copy_(m1)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.add_(m1)
    return net, meta


def checkpoint_from_onnx(path: str | Path, crops: np.ndarray, out: str | Path, input_size: int | None = None
                         ) -> Path:
    """Write :func:`network_from_onnx`'s network as a checkpoint ``out`` that ``TrainConfig.init_weights`` and
    :func:`star_track.nn.checkpoint.load_checkpoint` accept. ``input_size``: declare another input size (the
    weights of the fully convolutional network do not depend on it; the coordinate channels follow it)."""
    net, meta = network_from_onnx(path, crops)
    config = net.config.to_dict()
    if input_size is not None:
        config["input_size"] = int(input_size)
    write_checkpoint(Path(out), {"config": config, "model": net.state_dict(), "ema": None,
                                 "epoch": -1, "best": float(meta.extra.get("heldout_nme_gt_crop", "nan")),
                                 "source_onnx": str(path)})
    return Path(out)
