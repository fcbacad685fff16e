"""Function-preserving widening of a trained inverted-residual network (Net2Net-style): a larger expansion ratio
whose new hidden channels start with zero projection weights, so the wider network computes exactly what the
trained one does and training continues from there instead of from scratch."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from star_track.checkpoint import load_checkpoint, write_checkpoint
from star_track.network import InvertedResBlock, StarNet


def widen_expansion(net: StarNet, expand: int) -> StarNet:
    """A copy of ``net`` (``block="inverted"``) with expansion ratio ``expand`` >= its own; same function."""
    cfg = net.config
    if cfg.block != "inverted":
        raise ValueError(f"only inverted-residual networks can be widened (this one: {cfg.block!r})")
    if expand < cfg.expand:
        raise ValueError(f"expand {expand} is below the network's {cfg.expand}")
    wide = StarNet(replace(cfg, expand=expand))
    state = wide.state_dict()
    old = net.state_dict()
    blocks = {name for name, m in net.named_modules() if isinstance(m, InvertedResBlock)}
    for key, value in old.items():
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
            continue
        block = key.rsplit(".body.", 1)[0]
        if block not in blocks:
            raise ValueError(f"unexpected shape change outside an inverted block: {key}")
        layer = int(key.rsplit(".body.", 1)[1].split(".")[0])
        if layer == 6:  # 1x1 projection: old hidden channels copied, new ones contribute nothing
            target = torch.zeros_like(target)
            target[:, : value.shape[1]] = value
        else:  # expansion conv, depthwise conv, their BNs: first channels copied, the rest keep their init
            target = target.clone()
            target[: value.shape[0]] = value
        state[key] = target
    wide.load_state_dict(state)
    return wide.eval()


def widen_checkpoint(path: str | Path, expand: int, out: str | Path) -> Path:
    """Write :func:`widen_expansion` of checkpoint ``path`` (EMA weights when present) as a checkpoint that
    ``TrainConfig.init_weights`` accepts."""
    net, _ = load_checkpoint(path, prefer_ema=True)
    wide = widen_expansion(net, expand)
    write_checkpoint(Path(out), {"config": wide.config.to_dict(), "model": wide.state_dict(), "ema": None,
                                 "epoch": -1, "best": float("nan"), "widened_from": str(path)})
    return Path(out)
