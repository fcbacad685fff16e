"""``star-track info`` (engines, providers, detectors, the model and its card) and ``star-track models list`` /
``models import`` (the SDK is imported when a command runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..exits import error_boundary
from ..options import OPTIONS


def info(model: Optional[str] = OPTIONS["model"][1], engine: str = OPTIONS["engine"][1]) -> None:
    """Engine, execution providers, model metadata and model card."""
    import onnxruntime as ort

    from ...detection.blazeface import BUNDLED_DETECTORS
    from ...engines import create_engine, engine_availability, has_nvidia_gpu
    from ...hashing import sha256_file
    from ...model import BUNDLED_DIR
    from ...model.registry import default_model_path, model_card, resolve_model

    typer.echo(f"onnxruntime {ort.__version__}; providers: {', '.join(ort.get_available_providers())}")
    engines = "; ".join(f"{name} {state}" for name, state in engine_availability().items())
    typer.echo(f"engines: {engines}; NVIDIA GPU: {'yes' if has_nvidia_gpu() else 'no'}")
    for name, (fname, digest) in BUNDLED_DETECTORS.items():
        p = BUNDLED_DIR / fname
        state = "missing" if not p.is_file() else ("ok" if sha256_file(p) == digest else "CORRUPT (sha256 mismatch)")
        typer.echo(f"detector {name}: {fname} [{state}]")

    if model is None and not default_model_path().is_file():
        typer.echo(f"model: none (the bundled model {default_model_path()} is not installed; "
                   "use --model PATH.onnx)")
        return
    with error_boundary(model or "default model"):
        path = resolve_model(model)
        eng = create_engine(path, engine)
        m = eng.meta
        typer.echo(f"model: {path}\nengine: {eng.name}\nscheme: {m.scheme}, input {m.input_size}px, "
                   f"crop scale {m.crop_scale}, box calibration {m.box_calibration}")
        card = model_card(path)
        typer.echo(f"\n{card}" if card else "(no model card)")


def models_list() -> None:
    """Bundled and cached models with their points (the one ``default`` names is marked)."""
    from ...engines.onnxruntime_engine import OnnxRuntimeEngine
    from ...model.registry import cache_dir, default_model_path, list_models
    from ...model.schemes import get_scheme

    entries = list_models()
    bundled = {e.name for e in entries if e.source == "bundled"}
    for e in entries:
        mark = " (default)" if e.path == default_model_path() else ""
        if e.source != "bundled" and e.name in bundled:  # --model NAME finds the bundled one first
            mark = " (hidden by the bundled model of this name: select it by path)"
        try:
            scheme = get_scheme(OnnxRuntimeEngine(e.path, providers=["CPUExecutionProvider"], threads=1).meta.scheme)
            points = f"{scheme.num_points} points ({scheme.name})"
        except ValueError:  # ModelError too: one broken file must not hide the others
            points = "unreadable (star-track info -m NAME says why)"
        typer.echo(f"{e.name}{mark}\t{e.source}\t{points}\t{e.path}")
    if not entries:
        typer.echo(f"no models installed (bundled dir empty; cache {cache_dir()})")


def models_import(
    checkpoint: Path = typer.Argument(..., help="official STAR .pkl or a star-track training checkpoint (.pt)"),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="model name (default: the file's stem)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a cached model of the same name"),
) -> None:
    """Convert a checkpoint to a verified ONNX model in the user cache (use it with --model NAME)."""
    from ...nn.model_import import import_model

    with error_boundary(str(checkpoint)):
        path = import_model(checkpoint, name, overwrite)
    typer.echo(f"installed {path.stem}: {path}")
