"""Crop geometry: face region -> square similarity crop -> model input, and model output -> frame.

A :class:`Crop` is a similarity transform (centre, side length, roll angle) from frame pixels to crop pixels.
Landmarks map back through its inverse and covariances as A Σ Aᵀ with A the inverse's linear part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# A landmark-defined crop spans this multiple of the landmarks' bounding-box side. Training crops and the
# tracker's crops from previous landmarks both use it, so the network always sees faces framed the same way.
LANDMARK_CROP_SCALE = 1.3


@dataclass(frozen=True)
class Crop:
    """Square crop of side ``side`` frame pixels centred on ``center``, rotated by ``angle`` radians
    (the crop's x axis points along ``angle`` in the frame), resampled to ``size`` x ``size`` pixels."""

    center: tuple[float, float]
    side: float
    angle: float
    size: int

    @property
    def matrix(self) -> np.ndarray:
        """2x3 frame -> crop affine matrix."""
        k = self.size / self.side
        c, s = k * math.cos(self.angle), k * math.sin(self.angle)
        half = (self.size - 1) / 2.0
        x, y = self.center
        return np.array([[c, s, half - (c * x + s * y)], [-s, c, half - (c * y - s * x)]])

    @property
    def inverse(self) -> np.ndarray:
        """2x3 crop -> frame affine matrix."""
        return cv2.invertAffineTransform(self.matrix)

    def warp(self, frame: np.ndarray) -> np.ndarray:
        """Resample the crop from ``frame`` (bilinear; outside the frame is black)."""
        return cv2.warpAffine(frame, self.matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def to_frame(self, crop_pts: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixel coordinates -> frame pixel coordinates."""
        inv = self.inverse
        return crop_pts @ inv[:, :2].T + inv[:, 2]

    def to_crop(self, frame_pts: np.ndarray) -> np.ndarray:
        """(N, 2) frame pixel coordinates -> crop pixel coordinates."""
        m = self.matrix
        return frame_pts @ m[:, :2].T + m[:, 2]

    def normalized_to_frame(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model output in [-1, 1] crop units -> frame pixels: means (N, 2) and covariances (N, 2, 2)."""
        crop_pts = normalized_to_crop_pixels(mean, self.size)
        a = self.inverse[:, :2] * (self.size / 2.0)  # d(frame) / d(normalised)
        return self.to_frame(crop_pts), a @ cov @ a.T


def crops_to_frame(crops: list[Crop], mean: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Crop.normalized_to_frame` for the faces of a frame at once (one call per frame, not per face).

    Args:
        crops: B crops; mean (B, N, 2) model outputs in [-1, 1] crop units; covs (..., B, N, 2, 2) covariances
            in those units (e.g. raw and calibrated stacked on a leading axis).
    Returns:
        Frame-pixel means (B, N, 2) and covariances (..., B, N, 2, 2).

    For a similarity crop, crop pixels minus the crop's centre pixel are the normalised coordinates times
    size / 2, so frame = A u + centre with A = (side / 2) R(angle): A Σ Aᵀ = (side / 2)² R Σ Rᵀ.
    """
    pts, out = np.empty(mean.shape), np.empty(covs.shape)
    for b, c in enumerate(crops):
        k, co, si = c.side / 2, math.cos(c.angle), math.sin(c.angle)
        at = np.array([[k * co, k * si], [-k * si, k * co]])  # Aᵀ
        pts[b] = mean[b] @ at + c.center
        # A Σ Aᵀ as two plain (rows x 2) @ (2 x 2) products (a third of the time of a broadcast stack of 2x2
        # products): Σ Aᵀ row by row, then A (Σ Aᵀ) = ((Σ Aᵀ)ᵀ Aᵀ)ᵀ.
        cb = np.ascontiguousarray(covs[..., b, :, :, :])
        right = (cb.reshape(-1, 2) @ at).reshape(-1, 2, 2)
        out[..., b, :, :, :] = (right.swapaxes(1, 2).reshape(-1, 2) @ at).reshape(cb.shape).swapaxes(-1, -2)
    return pts, out


def normalized_to_crop_pixels(normalized: np.ndarray, size: int) -> np.ndarray:
    """The model's [-1, 1] coordinates -> pixels of a ``size`` crop: u = (2p + 1) / size - 1 (STAR_SPEC
    section 4), the one definition of that mapping (inverse: :func:`crop_pixels_to_normalized`)."""
    return (normalized + 1.0) * size / 2.0 - 0.5


def crop_pixels_to_normalized(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pixels of a ``size`` crop -> the model's [-1, 1] coordinates (inverse of
    :func:`normalized_to_crop_pixels`)."""
    return (pixels * 2 + 1) / size - 1


def frame_to_normalized(crop: Crop, frame_pts: np.ndarray) -> np.ndarray:
    """Frame pixels -> the model's [-1, 1] target coordinates for this crop."""
    return crop_pixels_to_normalized(crop.to_crop(frame_pts), crop.size)


def crop_from_landmarks(points: np.ndarray, size: int, scale: float = LANDMARK_CROP_SCALE,
                        rotate: bool = False, eye_corners: tuple[int, int] | None = None) -> Crop:
    """Crop framing a face by its landmarks: bounding-box centre, side = scale x longer box side.

    With ``rotate`` the crop is rolled so the line between ``eye_corners`` is horizontal, and the box is
    measured in that rotated frame.
    """
    pts = np.asarray(points, np.float64)
    angle = 0.0
    if rotate and eye_corners is not None:
        d = pts[eye_corners[1]] - pts[eye_corners[0]]
        angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # frame -> upright
    up = pts @ rot.T
    lo, hi = up.min(0), up.max(0)
    center = rot.T @ ((lo + hi) / 2)
    side = float(max(hi - lo) * scale)
    return Crop((float(center[0]), float(center[1])), max(side, 1.0), angle, size)


def crop_from_box(box: np.ndarray | tuple[float, float, float, float], size: int,
                  calibration: tuple[float, float, float] = (0.0, 0.0, 1.0), angle: float = 0.0) -> Crop:
    """Crop from a detector box (x1, y1, x2, y2), rolled by ``angle`` radians (e.g. the detector's eye line).

    ``calibration`` = (dx, dy, k): centre shift in units of the box side and side multiplier, fitted on data so
    a detector box yields the same framing as :func:`crop_from_landmarks` (stored in the model's metadata).
    The shift is along the face's own axes, so it turns with ``angle``.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    dx, dy, k = calibration
    c, s = np.cos(angle), np.sin(angle)
    cx = (x1 + x2) / 2 + (c * dx - s * dy) * side
    cy = (y1 + y2) / 2 + (s * dx + c * dy) * side
    return Crop((cx, cy), max(side * k, 1.0), float(angle), size)
