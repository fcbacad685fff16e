"""Landmark engines: ``create_engine`` picks and loads a backend behind the :class:`LandmarkEngine` protocol.

Backends are registered by name with a lazy loader, so optional ones (``torch``, ``tensorrt``) cost nothing
unless asked for and a missing dependency becomes a one-line hint instead of an ImportError.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Callable

from ..errors import EngineUnavailable, MissingDependency, ModelError
from .base import LandmarkEngine

GPU_HINT = 'pip install "star-track[gpu]"'


EngineLoader = Callable[[Path], LandmarkEngine]
_REGISTRY: dict[str, tuple[str, str, str, str]] = {
    # name -> (module, class, install hint, the package it needs)
    "onnxruntime": ("star_track.engines.onnxruntime_engine", "OnnxRuntimeEngine", 'pip install onnxruntime',
                    "onnxruntime"),
    "torch": ("star_track.engines.torch_engine", "TorchEngine", 'pip install "star-track[train]"', "torch"),
    "tensorrt": ("star_track.engines.tensorrt_engine", "TensorRTEngine", GPU_HINT, "tensorrt"),
}
_CUSTOM: dict[str, EngineLoader] = {}


def register_engine(name: str, loader: EngineLoader) -> None:
    """Make ``create_engine(model, engine=name)`` call ``loader(model_path)``."""
    _CUSTOM[name] = loader


def engine_names() -> list[str]:
    """Names accepted by :func:`create_engine` (besides ``"auto"``)."""
    return sorted(set(_REGISTRY) | set(_CUSTOM))


def engine_availability() -> dict[str, str]:
    """Each engine name -> ``"installed"`` or ``"not installed (HINT)"``, from the packages present (nothing is
    imported; a custom engine counts as installed)."""
    out = {name: "installed" for name in _CUSTOM}
    for name, (_, _, hint, package) in _REGISTRY.items():
        out.setdefault(name, "installed" if importlib.util.find_spec(package) is not None
                       else f"not installed ({hint})")
    return dict(sorted(out.items()))


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded (cheap check, no CUDA import)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def _loader(name: str) -> EngineLoader:
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name not in _REGISTRY:
        raise ValueError(f"unknown engine {name!r} (choose from: auto, {', '.join(engine_names())})")
    module, cls, hint, _ = _REGISTRY[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise MissingDependency(f"engine {name!r} is not available ({missing} is not installed); "
                                f"install it with: {hint}") from None
    except AttributeError:
        raise EngineUnavailable(f"engine {name!r} is not available in this version of star-track") from None


def create_engine(model: str | os.PathLike | None = None, engine: str = "auto",
                  threads: int | None = None) -> LandmarkEngine:
    """Load ``model`` (see :func:`star_track.model.registry.resolve_model`) on ``engine``.

    ``threads``: CPU threads for ONNX Runtime (``None``: its measured default, see
    :func:`star_track.engines.onnxruntime_engine.default_threads`); GPU engines ignore it.

    ``"auto"`` tries TensorRT when it is installed and an NVIDIA GPU is present, else ONNX Runtime (which
    itself prefers its CUDA provider when available). A model with an INT8 body (``NAME-int8.onnx``, for CPUs:
    ``python -m train quantize``) runs as its float source ``NAME.onnx`` beside it on a machine with an NVIDIA
    GPU, whose fast path is the float graph (TensorRT FP16).

    Raises:
        ModelError: the model is missing or invalid.
        EngineUnavailable: the engine's package or hardware is missing (message says what to install).
        ValueError: unknown engine name.
    """
    from ..model.registry import resolve_model

    path = resolve_model(model)
    if has_nvidia_gpu():
        path = float_source(path)
    if engine == "auto":
        if _tensorrt_possible(path):
            try:
                return _loader("tensorrt")(path)
            except Exception as e:  # any TensorRT failure (build, CUDA, plugin): ONNX Runtime still runs it
                warnings.warn(f"TensorRT engine unavailable ({type(e).__name__}: {e}); using ONNX Runtime",
                              RuntimeWarning, stacklevel=2)
        engine = "onnxruntime"
    if engine == "onnxruntime" and engine not in _CUSTOM:
        return _loader(engine)(path, threads=threads)  # type: ignore[call-arg]
    return _loader(engine)(path)


INT8_SUFFIX = "-int8"
"""Name suffix of a model whose network body is quantized for CPUs (its float source: the name without it)."""


def float_source(path: Path) -> Path:
    """The float model an INT8-body model was quantized from (``NAME-int8.onnx`` -> ``NAME.onnx`` beside it), or
    ``path`` itself when it is not one or the source is not there."""
    if not path.stem.endswith(INT8_SUFFIX):
        return path
    source = path.with_name(path.stem[:-len(INT8_SUFFIX)] + path.suffix)
    return source if source.is_file() else path


def _tensorrt_possible(path: Path) -> bool:
    return path.suffix == ".onnx" and has_nvidia_gpu() and importlib.util.find_spec("tensorrt") is not None


__all__ = ["EngineUnavailable", "LandmarkEngine", "ModelError", "create_engine", "engine_names",
           "register_engine", "has_nvidia_gpu", "engine_availability", "GPU_HINT", "INT8_SUFFIX", "float_source"]
