"""Load a STAR network from a checkpoint: our trainer's ``.pt`` files or the official STAR ``.pkl`` release.

Official checkpoints (STAR_SPEC section 7) are ``torch.save`` dicts ``{net, optimizer, scheduler, epoch,
net_ema}`` whose ``net`` state dict uses the same key names as :class:`star_track.nn.network.StarNet`, possibly
behind a ``module.`` (DataParallel/DDP) prefix. The network size is read from the tensor shapes, the
landmark scheme from the fixed edge->heatmap matrix. torch is imported lazily: the runtime never needs it.

Note: import from the real released weights has only been tested with synthetic files in that layout.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..model.meta import ModelMeta

if TYPE_CHECKING:
    import torch

    from .network import NetworkConfig, StarNet

# e2h_transform.weight is (N, E, 1, 1): (points, edges) identifies the dataset the model was trained on.
OFFICIAL_SCHEMES: dict[tuple[int, int], str] = {(98, 9): "wflw98", (68, 9): "300w68", (29, 7): "cofw29"}
OFFICIAL_INPUT_SIZE = 256
_PREFIXES = ("module.", "_orig_mod.", "net.")  # DDP / DataParallel, torch.compile, wrapper modules
# Renames seen in re-saved copies of the reference model: an extra ConvBlock level inside the CoordConv.
_RENAMES = ((re.compile(r"coordconv\.conv\.conv\."), "coordconv.conv."),
            (re.compile(r"^pre\.0\.conv\.conv\."), "pre.0.conv."))
# Checkpoint keys StarNet has no use for: the reference's never-used residual projections (every ResBlock has a
# skip_layer, ~3.7M dead weights; StarNet creates one only where cin != cout), coordinate buffers some forks
# keep, BN counters. Absent BN counters (very old files) are fine too.
_UNUSED = re.compile(r"(\.skip_layer\.conv\.(weight|bias)$|addcoords\.|\.coords$|num_batches_tracked$)")
_OPTIONAL = re.compile(r"num_batches_tracked$")


def _torch():
    from ..errors import require_torch  # the runtime install has no torch

    return require_torch("loading checkpoints")


def load_checkpoint(path: str | Path, prefer_ema: bool = True,
                    input_size: int | None = None) -> tuple["StarNet", ModelMeta]:
    """Load our ``.pt`` checkpoint or an official STAR ``.pkl`` into an eval-mode :class:`StarNet`.

    Args:
        path: checkpoint file.
        prefer_ema: use our checkpoints' ``ema`` weights when present (official files always use ``net``).
        input_size: network input size for official files (it is not stored in them; default 256).
    Returns:
        the network on CPU in eval mode, and its :class:`ModelMeta`.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    torch = _torch()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        try:
            # Official .pkl files pickle more than tensors (optimizer/scheduler objects): they need
            # weights_only=False, i.e. full unpickling. Only load checkpoints you trust.
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if "model" in obj and "config" in obj:
        return load_trainer_state(obj, path.stem, prefer_ema)
    if "net" in obj:  # official: "net" (the release may already hold EMA weights there), per STAR_SPEC 7
        return load_official_state(obj, path.stem, input_size=input_size)
    if all(hasattr(v, "shape") for v in obj.values()) and any(k.endswith("e2h_transform.weight") for k in obj):
        return load_official_state({"net": obj}, path.stem, input_size=input_size)  # a bare state dict
    raise ModelError(f"{path}: not a star-track checkpoint (keys config/model) nor an official STAR one "
                     f"(key net); found keys {sorted(map(str, obj))[:10]}")


def load_trainer_state(obj: Mapping[str, Any], name: str = "checkpoint", prefer_ema: bool = True
                       ) -> tuple["StarNet", ModelMeta]:
    """Build a :class:`StarNet` from our trainer's checkpoint dict (keys ``config``, ``model``, optional
    ``ema`` and ``meta``; metadata defaults from the config when absent)."""
    from .network import NetworkConfig

    config = NetworkConfig.from_dict(obj["config"])
    state = obj["ema"] if prefer_ema and obj.get("ema") is not None else obj["model"]
    net = build_network(config, state, source=name)
    meta = obj.get("meta")
    if isinstance(meta, ModelMeta):
        pass
    elif isinstance(meta, Mapping):
        fields = {k: v for k, v in meta.items() if k in ModelMeta.__dataclass_fields__}
        if "box_calibration" in fields:
            fields["box_calibration"] = tuple(fields["box_calibration"])
        meta = ModelMeta(**{"name": name, "scheme": config.scheme, "input_size": config.input_size,
                            "network": config.to_dict(), **fields})
    else:
        meta = meta_for(config, name)
    return net, meta


def meta_for(config: "NetworkConfig", name: str, **extra: Any) -> ModelMeta:
    """Default :class:`ModelMeta` for a network without stored metadata (default crop framing)."""
    return ModelMeta(name=name, scheme=config.scheme, input_size=config.input_size,
                     network=config.to_dict(), extra=dict(extra))


def load_official_state(obj: Mapping[str, Any], name: str = "star-official", prefer_ema: bool = False,
                        input_size: int | None = None) -> tuple["StarNet", ModelMeta]:
    """Build a :class:`StarNet` from an official STAR checkpoint dict (already unpickled).

    ``net`` is used by default (the release may already hold EMA weights there); ``prefer_ema`` picks
    ``net_ema`` when it is present.
    """
    raw = obj["net_ema"] if prefer_ema and obj.get("net_ema") is not None else obj["net"]
    if hasattr(raw, "state_dict"):  # a pickled module rather than a state dict
        raw = raw.state_dict()
    if not isinstance(raw, Mapping):
        raise ModelError(f"official checkpoint: 'net' is a {type(raw).__name__}, expected a state dict")
    state = map_official_keys(raw)
    config = infer_config(state, input_size or OFFICIAL_INPUT_SIZE)
    net = build_network(config, state, source=name)
    unused = sum(1 for k in state if k not in net.state_dict())
    meta = meta_for(config, name, source="official STAR checkpoint", epoch=obj.get("epoch"),
                    unused_tensors_dropped=unused)
    return net, meta


def map_official_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Official key names -> :class:`StarNet` key names (strip wrapper prefixes, flatten extra nesting)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        stripped = True
        while stripped:  # prefixes can stack, e.g. module._orig_mod.
            stripped = False
            for prefix in _PREFIXES:
                if new.startswith(prefix):
                    new, stripped = new[len(prefix):], True
        for pattern, repl in _RENAMES:
            new = pattern.sub(repl, new)
        if new in out:
            raise ModelError(f"official checkpoint: keys collide after renaming: {key!r} -> {new!r}")
        out[new] = value
    return out


def detect_scheme(state: Mapping[str, Any]) -> str:
    """Landmark scheme from the edge->heatmap matrix shape (98x9 WFLW, 68x9 300W, 29x7 COFW)."""
    w = state.get("e2h_transform.weight")
    if w is None:
        raise ModelError("checkpoint has no e2h_transform.weight: cannot tell its landmark scheme")
    n, e = int(w.shape[0]), int(w.shape[1])
    if (n, e) not in OFFICIAL_SCHEMES:
        known = ", ".join(f"{a}x{b} {s}" for (a, b), s in OFFICIAL_SCHEMES.items())
        raise ModelError(f"e2h_transform.weight is {n}x{e}; known schemes: {known}")
    return OFFICIAL_SCHEMES[(n, e)]


def infer_config(state: Mapping[str, Any], input_size: int = OFFICIAL_INPUT_SIZE) -> "NetworkConfig":
    """Network size from tensor shapes: stacks from ``hgs.{s}``, channels and hourglass depth from stack 0."""
    from .network import NetworkConfig

    stacks = {int(m.group(1)) for k in state if (m := re.match(r"hgs\.(\d+)\.", k))}
    if not stacks:
        raise ModelError("checkpoint has no hgs.* keys: not a STAR stacked hourglass")
    try:
        channels = int(state["hgs.0.coordconv.conv.weight"].shape[0])
    except KeyError as exc:
        raise ModelError("checkpoint has no hgs.0.coordconv.conv.weight: cannot tell the channel count") from exc
    depth = max(k.count("low2.") for k in state if k.startswith("hgs.0."))
    return NetworkConfig(scheme=detect_scheme(state), num_stacks=max(stacks) + 1, channels=channels,
                         depth=depth, input_size=input_size)


def build_network(config: "NetworkConfig", state: Mapping[str, "torch.Tensor"], source: str = "checkpoint"
                  ) -> "StarNet":
    """A :class:`StarNet` of ``config`` with ``state`` loaded; fails listing missing/unexpected/misshapen keys."""
    from .network import StarNet

    try:
        net = StarNet(config)
    except ValueError as exc:
        raise ModelError(f"{source}: invalid network config {config}: {exc}") from exc
    ours = net.state_dict()
    missing = [k for k in ours if k not in state and not _OPTIONAL.search(k)]
    unexpected = [k for k in state if k not in ours and not _UNUSED.search(k)]
    misshapen = [f"{k} {tuple(state[k].shape)} != {tuple(ours[k].shape)}" for k in ours
                 if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or misshapen:
        raise ModelError(f"{source}: state dict does not fit StarNet({config}):\n" + _listing(
            ("missing", missing), ("unexpected", unexpected), ("shape mismatch", misshapen)))
    net.load_state_dict({k: v for k, v in state.items() if k in ours}, strict=False)
    return net.eval()


def _listing(*groups: tuple[str, list[str]], limit: int = 12) -> str:
    lines = []
    for label, keys in groups:
        if keys:
            more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
            lines.append(f"  {label} ({len(keys)}): {', '.join(keys[:limit])}{more}")
    return "\n".join(lines)


def save_checkpoint(net: "StarNet", path: str | Path, meta: ModelMeta | None = None,
                    ema_state: Mapping[str, Any] | None = None) -> Path:
    """Write ``net`` in our checkpoint layout (``config``, ``model``, optional ``ema`` and ``meta``)."""
    from dataclasses import asdict

    payload = {"config": net.config.to_dict(), "model": net.state_dict(),
               "ema": dict(ema_state) if ema_state is not None else None,
               "meta": asdict(meta) if meta is not None else None}
    return write_checkpoint(path, payload)


def write_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """``torch.save(state)`` to ``path`` through a ``.tmp`` file renamed into place, so a checkpoint is never
    left half-written (the one checkpoint writer: :func:`save_checkpoint` and the training loop use it)."""
    import os

    torch = _torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(dict(state), str(tmp))
    os.replace(tmp, path)
    return path
