"""What the tracker returns: :class:`Face` (one face in one frame, frame pixels), the frame check
:func:`as_bgr`, and :class:`NonFiniteOutputWarning` for faces a broken model leaves out.

Uncertainty
  ``Face.score`` = ``1 / (1 + (u / uncertainty_half)⁴)``, u the median raw STAR landmark spread in crop units.
  ``Face.covariance``: the *calibrated* covariance of each landmark's error in frame px² (2-σ ellipse: the true
  point ~86 % of the time); ``Face.star_covariance`` the raw STAR one (the score's). A model without calibration
  reports the raw one as both and warns once (``UncalibratedUncertaintyWarning``; the default face-level smoother
  measures the noise level itself, ``smoothing="kalman"`` wants ``smoothing_params={"r_scale": 0.1}``).
  ``Face.expected_error``: the predicted NME, to drop bad frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from ..analysis.pose import Pose


class NonFiniteOutputWarning(RuntimeWarning):
    """The model produced NaN/inf landmarks; such faces are dropped from the frame's results."""


@dataclass
class Face:
    """One tracked face in one frame (all coordinates in frame pixels)."""

    track_id: int
    box: np.ndarray
    """(4,) x1, y1, x2, y2: bounding box of the raw landmarks."""
    score: float
    """Confidence in [0, 1] from the landmark covariances (see the module docs)."""
    landmarks: np.ndarray
    """(N, 2) smoothed landmarks (x, y)."""
    raw_landmarks: np.ndarray
    """(N, 2) this frame's network output before smoothing."""
    covariance: np.ndarray
    """(N, 2, 2) calibrated covariance of each raw landmark's error in frame pixels² (see
    the module docs)."""
    star_covariance: np.ndarray | None = None
    """(N, 2, 2) raw decoded STAR covariance (heatmap spread) in frame pixels²."""
    expected_error: float = float("nan")
    """Predicted NME of this face (mean expected landmark error / outer-eye-corner distance, a fraction)."""
    pose: Pose | None = None
    """Head pose (yaw, pitch, roll in degrees with their sd, ``rotation``, ``translation``, 4x4 ``matrix``),
    smoothed in video; None when no pose fits or the analysis is off (:mod:`star_track.tracking.states`)."""
    eye_open: tuple[float, float] = (math.nan, math.nan)
    """(left, right) eye openness of the subject's own eyes, pose-normalised: 0 closed, 1 for the 3D mean face's
    open eye (real open eyes often read somewhat higher), NaN: analysis off."""
    mouth_open: float = math.nan
    """Inner-lip gap over the mean face's mouth width: 0 closed, ~0.1 relaxed, > 0.5 wide open (NaN: off)."""
    blink: bool = False
    """True while the eyes are closed in a closure the track's blink detector follows (video only)."""


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Validate a frame and return it as contiguous (H, W, 3) uint8 BGR.

    Accepts (H, W) or (H, W, 1) grayscale, (H, W, 3) BGR and (H, W, 4) BGRA.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        if frame.size == 0:
            raise ValueError(f"frame is empty (shape {frame.shape})")
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"frame must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty (shape {frame.shape})")
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)
