"""The landmark engine protocol: every backend turns a batch of face crops into landmarks + covariances."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..model.meta import ModelMeta


@runtime_checkable
class LandmarkEngine(Protocol):
    """A loaded STAR model on one backend.

    ``infer`` takes (B, S, S, 3) uint8 BGR crops (S = ``meta.input_size``) and returns landmark means
    (B, N, 2) as (x, y) in [-1, 1] crop units and covariances (B, N, 2, 2) in the same units, float32.
    """

    name: str
    """Backend name as shown to users, e.g. ``onnxruntime[CPUExecutionProvider]``."""
    meta: ModelMeta

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) uint8 BGR crops -> means (B, N, 2) and covariances (B, N, 2, 2) in [-1, 1] crop units."""
        ...


def check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """Validate a crop batch and return it as contiguous uint8 (B, S, S, 3)."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
        raise ValueError(f"crops must be (B, {size}, {size}, 3) BGR, got shape {crops.shape}")
    return np.ascontiguousarray(crops, dtype=np.uint8)


def to_nchw_float(crops: np.ndarray) -> np.ndarray:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 in 0..255: the exported graph's input convention."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
