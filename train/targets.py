"""Training targets (STAR_SPEC section 4): Gaussian point maps and smooth edge maps at heatmap size."""
from __future__ import annotations

import cv2
import numpy as np

from star_track.model.schemes import LandmarkScheme


def point_maps(points: np.ndarray, input_size: int, heatmap_size: int, sigma: float = 1.5) -> np.ndarray:
    """(N, 2) crop-pixel points -> (N, h, h) Gaussians of peak 1, drawn at input size and resized to h."""
    grid = np.arange(input_size, dtype=np.float32)
    gx = np.exp(-((grid[None, :] - points[:, 0:1]) ** 2) / (2 * sigma**2))  # (N, S)
    gy = np.exp(-((grid[None, :] - points[:, 1:2]) ** 2) / (2 * sigma**2))
    full = gy[:, :, None] * gx[:, None, :]  # separable 2D Gaussian
    return _resize_stack(full, heatmap_size)


def _catmull_rom(pts: np.ndarray, closed: bool, samples: int = 8) -> np.ndarray:
    """Smooth curve through every point (a cubic Catmull-Rom spline)."""
    if len(pts) < 3:
        return pts
    p = np.concatenate([pts[-1:], pts, pts[:2]]) if closed else np.concatenate([pts[:1], pts, pts[-1:]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    segs = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        segs.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                           + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    segs.append(p[-2][None] if not closed else p[1][None])
    return np.concatenate(segs)


def edge_maps(points: np.ndarray, scheme: LandmarkScheme, input_size: int, heatmap_size: int) -> np.ndarray:
    """(E, h, h) anti-aliased curves through each edge's points, drawn at input size and resized."""
    out = np.zeros((scheme.num_edges, input_size, input_size), np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing
    for e, edge in enumerate(scheme.edges):
        curve = _catmull_rom(points[list(edge.points)], edge.closed)
        poly = np.round(curve * (1 << shift)).astype(np.int32)
        cv2.polylines(out[e], [poly], edge.closed, 255, 1, cv2.LINE_AA, shift)
    return _resize_stack(out.astype(np.float32) / 255.0, heatmap_size)


def _resize_stack(maps: np.ndarray, size: int) -> np.ndarray:
    if maps.shape[-1] == size:
        return maps.astype(np.float32)
    chw = np.ascontiguousarray(maps.transpose(1, 2, 0))
    small = cv2.resize(chw, (size, size), interpolation=cv2.INTER_LINEAR)
    if small.ndim == 2:
        small = small[:, :, None]
    return np.ascontiguousarray(small.transpose(2, 0, 1)).astype(np.float32)
