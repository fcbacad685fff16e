"""Shared pytest hooks: tests marked ``gpu`` skip automatically on machines without a usable NVIDIA GPU."""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=1)
def _gpu_skip_reason() -> str | None:
    """Why GPU tests cannot run here (None when they can). torch is imported only when a gpu test exists."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return None
    try:
        import tensorrt  # noqa: F401  (a TensorRT install implies a GPU machine even without CUDA torch)
    except ImportError:
        return "no CUDA GPU (torch.cuda unavailable) and TensorRT not installed"
    return None if torch is None else "TensorRT is installed but torch sees no CUDA device"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=f"gpu: {reason}"))
