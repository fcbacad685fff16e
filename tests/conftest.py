"""Shared pytest hooks: tests marked ``gpu`` skip automatically on machines without a usable NVIDIA GPU."""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=1)
def _gpu_skip_reason() -> str | None:
    """Why GPU tests cannot run here (None when they can). torch is imported only when a gpu test exists.

    Every GPU path (torch CUDA engine, TensorRT buffers) goes through torch's CUDA runtime, so a CUDA-capable
    torch is the test; tests that also need TensorRT add ``pytest.importorskip("tensorrt")``.
    """
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=f"gpu: {reason}"))
