"""Function-preserving widening of a trained inverted-residual network (Net2Net-style): a larger expansion ratio
whose new hidden channels start with zero projection weights, so the wider network computes exactly what the
trained one does and training continues from there instead of from scratch."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from star_track.nn.checkpoint import load_checkpoint, write_checkpoint
from star_track.nn.network import InvertedResBlock, StarNet


def widen_expansion(net: StarNet, expand: int, inner_expand: int | None = None) -> StarNet:
    """A copy of ``net`` (``block="inverted"``) with expansion ratio ``expand`` and, below the hourglasses' top
    resolution, ``inner_expand`` (``None``: ``expand``), each >= the network's own; same function."""
    cfg = net.config
    if cfg.block != "inverted":
        raise ValueError(f"only inverted-residual networks can be widened (this one: {cfg.block!r})")
    inner_expand = expand if inner_expand is None else inner_expand
    for name, wanted, own in (("expand", expand, cfg.expand),
                              ("inner_expand", inner_expand, cfg.inner_expand or cfg.expand)):
        if wanted < own:
            raise ValueError(f"{name} {wanted} is below the network's {own}")
    wide = StarNet(replace(cfg, expand=expand, inner_expand=None if inner_expand == expand else inner_expand))
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


def widen_checkpoint(path: str | Path, expand: int, out: str | Path, inner_expand: int | None = None) -> Path:
    """Write :func:`widen_expansion` of checkpoint ``path`` (EMA weights when present) as a checkpoint that
    ``TrainConfig.init_weights`` accepts."""
    net, _ = load_checkpoint(path, prefer_ema=True)
    wide = widen_expansion(net, expand, inner_expand)
    write_checkpoint(Path(out), {"config": wide.config.to_dict(), "model": wide.state_dict(), "ema": None,
                                 "epoch": -1, "best": float("nan"), "widened_from": str(path)})
    return Path(out)
