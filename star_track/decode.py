"""Heatmap decoding: the numpy reference for landmark means and STAR covariances (STAR_SPEC section 2).

The ONNX graph (:func:`star_track.nn.network.decode_heatmaps_torch`) and every engine are tested against this.
"""
from __future__ import annotations

import numpy as np


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft-argmax mean and distribution covariance of each heatmap.

    Args:
        heatmaps: (B, N, H, W) non-negative maps (negatives are clipped).
    Returns:
        mean (B, N, 2) as (x, y) in [-1, 1] crop coordinates and covariance (B, N, 2, 2) in the same units.
    """
    hm = np.clip(np.asarray(heatmaps, np.float64), 0, None)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be (B, N, H, W), got shape {hm.shape}")
    _, _, h, w = hm.shape
    p = hm / np.maximum(hm.sum(axis=(2, 3), keepdims=True), 1e-6)
    gx = np.linspace(-1.0, 1.0, w)[None, None, None, :]
    gy = np.linspace(-1.0, 1.0, h)[None, None, :, None]
    mx = (p * gx).sum(axis=(2, 3))
    my = (p * gy).sum(axis=(2, 3))
    dx = gx - mx[..., None, None]
    dy = gy - my[..., None, None]
    v1 = p.sum(axis=(2, 3)) + 1e-5
    v2 = (p * p).sum(axis=(2, 3)) + 1e-5
    denom = v1 - v2 / v1  # unbiased weighted covariance
    sxx = (p * dx * dx).sum(axis=(2, 3)) / denom
    sxy = (p * dx * dy).sum(axis=(2, 3)) / denom
    syy = (p * dy * dy).sum(axis=(2, 3)) / denom
    mean = np.stack([mx, my], -1)
    cov = np.stack([np.stack([sxx, sxy], -1), np.stack([sxy, syy], -1)], -2)
    return mean.astype(np.float32), cov.astype(np.float32)


def eig2x2(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of symmetric (..., 2, 2) matrices: eigenvalues ascending (..., 2), eigenvectors
    as columns (..., 2, 2) — STAR's lambda1 <= lambda2 with v1, v2."""
    lam, vec = np.linalg.eigh(np.asarray(cov, np.float64))
    return lam, vec
