"""The smoother interface shared by every filter."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Smoother(Protocol):
    """Temporal filter for one face track's landmarks (one instance per track).

    ``update`` takes the frame's measured landmarks (N, 2) and their covariances (N, 2, 2) in frame pixels,
    the time since the previous update ``dt`` in seconds, and the face size ``scale`` in pixels (side of
    the landmark box), and returns the smoothed landmarks (N, 2).
    """

    def update(self, points: np.ndarray, cov: np.ndarray, dt: float, scale: float) -> np.ndarray:
        """Smoothed (N, 2) landmarks from this frame's ``points`` (N, 2), their calibrated covariances
        (N, 2, 2) in pixels², the time since the last update ``dt`` (s) and the face size ``scale`` (px)."""
        ...

    def reset(self) -> None:
        """Forget the state: the next update starts a new track."""
        ...


class NoSmoothing:
    """Pass-through: returns the measurements unchanged."""

    def update(self, points: np.ndarray, cov: np.ndarray, dt: float, scale: float) -> np.ndarray:
        return np.asarray(points, np.float64).copy()

    def reset(self) -> None:
        pass
