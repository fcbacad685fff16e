"""Where models live: resolve the ``model`` argument to a file.

* ``None`` or ``"default"`` -> the bundled default model, ``star_track/model/bundled/<DEFAULT_BUNDLED>.onnx``;
* a path (contains a path separator, ends in ``.onnx``/``.pt``/``.engine``, or exists) -> that file;
* any other name -> a bundled ``star_track/model/bundled/NAME.onnx`` (e.g. ``star68-accurate``), else
  ``<cache root>/models/NAME.onnx`` with ``<cache root>`` = ``$STAR_TRACK_CACHE`` or ``~/.cache/star-track``
  (TensorRT engines live beside, in ``<cache root>/engines``).

A model's card is the ``.md`` file next to it with the same stem (``star68-fast.md`` for ``star68-fast.onnx``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from . import BUNDLED_DIR

DEFAULT_MODEL = "default"
DEFAULT_BUNDLED = "star68-fast-int8"
"""Which bundled model ``"default"`` means: ``star68-fast`` with its network body in INT8 (``python -m train
quantize``): the same points (held-out 300W NME 3.49 %, the float model's to 0.01 points) in 0.76x its CPU time,
~4.5x less than ``star68-accurate``. On a machine with an NVIDIA GPU the float ``star68-fast`` runs instead
(:func:`star_track.engines.float_source`)."""
PHOTO_BUNDLED = "star68-precise-int8"
"""The bundled model photo mode uses when none is named (``star-track image``, :meth:`Tracker.for_photos
<star_track.tracking.tracker.Tracker.for_photos>`): the most precise one (lowest held-out NME in its card), its
body in INT8: ~8x the engine time of :data:`DEFAULT_BUNDLED` per face (~16x with photo mode's flip averaging; the
float ``star68-precise``: ~13x / ~25x); 10-21 ms a face on one core of the 2-core build machines (README, Models)."""
CACHE_ENV = "STAR_TRACK_CACHE"
MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".engine", ".plan")


@dataclass(frozen=True)
class ModelEntry:
    """A model known to the registry."""

    name: str
    path: Path
    source: str
    """``"bundled"`` or ``"cache"``."""


def cache_root() -> Path:
    """star-track's cache root: ``$STAR_TRACK_CACHE`` or ``~/.cache/star-track`` (not created)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "star-track"


def cache_dir() -> Path:
    """User model directory (not created)."""
    return cache_root() / "models"


def _looks_like_path(model: str) -> bool:
    return (os.sep in model or "/" in model or model.lower().endswith(MODEL_SUFFIXES)
            or Path(model).exists())


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """Model argument -> existing file path.

    Raises:
        ModelError: the file does not exist (message lists the models that do).
    """
    if model is None or model == DEFAULT_MODEL:
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"the bundled model {path} is not installed; pass --model PATH.onnx "
                             "or a model name from `star-track models list`")
        return path
    if isinstance(model, os.PathLike) or _looks_like_path(str(model)):
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelError(f"model {path} does not exist")
        if path.is_dir():
            raise ModelError(f"model {path} is a directory, not a model file")
        return path
    path = BUNDLED_DIR / f"{model}.onnx"
    if not path.is_file():
        path = cache_dir() / f"{model}.onnx"
    if not path.is_file():
        known = ", ".join(e.name for e in list_models()) or "none"
        raise ModelError(f"no model named {model!r} (looked for {path}; known models: {known})")
    return path


def default_model_path() -> Path:
    """The file ``"default"`` resolves to (it may be missing in a broken install)."""
    return BUNDLED_DIR / f"{DEFAULT_BUNDLED}.onnx"


def list_models() -> list[ModelEntry]:
    """Bundled and cached ``.onnx`` models, bundled first."""
    out = []
    for source, d in (("bundled", BUNDLED_DIR), ("cache", cache_dir())):
        if d.is_dir():
            out += [ModelEntry(p.stem, p, source) for p in sorted(d.glob("*.onnx"))]
    return out


def model_card(path: str | Path) -> str | None:
    """Text of the model card next to ``path`` (same stem, ``.md``), or None."""
    card = Path(path).with_suffix(".md")
    return card.read_text(encoding="utf-8") if card.is_file() else None
