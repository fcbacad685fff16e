"""Import a checkpoint (an official STAR ``.pkl`` or one of our ``.pt``) as a named model in the user cache.

The result is ``<cache>/models/NAME.onnx`` (verified against PyTorch) plus a short ``NAME.md`` card, usable
as ``Tracker(model=NAME)`` / ``--model NAME``. Needs the training extra (torch, onnx); the runtime does not.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import TRAIN_HINT, MissingDependency, ModelError
from ..model.registry import cache_dir


def import_model(checkpoint: str | Path, name: str | None = None, overwrite: bool = False,
                 tolerance: float = 1e-3) -> Path:
    """Convert ``checkpoint`` to ONNX in the model cache and return the new model's path.

    Raises:
        ModelError: unreadable checkpoint, a name already taken (without ``overwrite``), failed parity.
        MissingDependency: torch/onnx missing (the message says what to install).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint {checkpoint} does not exist")
    if checkpoint.suffix.lower() == ".onnx":
        raise ModelError(f"{checkpoint} is already an ONNX model: use it as it is (--model {checkpoint}) or copy it "
                         f"into the model cache ({cache_dir()})")
    name = name or checkpoint.stem
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelError(f"model name {name!r} may only hold letters, digits, '-', '_' and '.'")
    out = cache_dir() / f"{name}.onnx"
    if out.exists() and not overwrite:
        raise ModelError(f"a model named {name!r} already exists ({out}); overwrite=True (--overwrite) replaces it")
    try:
        from .checkpoint import load_checkpoint
        from .onnx_export import export_onnx, verify_onnx
    except ImportError as e:
        raise MissingDependency(f"importing checkpoints needs torch and onnx ({e.name} is missing): {TRAIN_HINT}") from None
    net, meta = load_checkpoint(checkpoint)
    meta = replace(meta, name=name)  # the name it is selected by, in its metadata and messages too
    tmp = out.with_name(f".{name}.partial.onnx")
    export_onnx(net, meta, tmp)
    parity = verify_onnx(tmp, net, tolerance=tolerance)
    if not parity.ok:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"exported ONNX disagrees with PyTorch ({parity}); not installed")
    tmp.replace(out)
    net_cfg = meta.network
    out.with_suffix(".md").write_text(
        f"# {name}\n\nImported from `{checkpoint}` ({meta.extra.get('source', 'star-track checkpoint')}).\n\n"
        f"- scheme: {meta.scheme}, input {meta.input_size}x{meta.input_size}, "
        f"{net_cfg.get('num_stacks')} stacks x {net_cfg.get('channels')} channels\n"
        f"- ONNX vs PyTorch: {parity}\n"
        "- crop framing: star-track defaults (not calibrated for these weights)\n"
        "- licence: that of the weights; the official STAR weights are for research use only\n")
    return out
