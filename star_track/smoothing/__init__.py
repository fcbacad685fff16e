"""Temporal smoothing of landmark tracks: ``kalman`` (per-landmark, STAR-covariance aware), ``face`` (face-level:
rigid motion + shape modes + residual, STAR-covariance weighted), ``one-euro``, ``none``.

``make_smoother(name, **params)`` returns a fresh filter; the tracker calls it once per face track.
"""
from __future__ import annotations

from typing import Any

from .base import NoSmoothing, Smoother
from .face_level import FaceLevelSmoother
from .kalman import KalmanSmoother
from .one_euro import OneEuroSmoother

SMOOTHERS: dict[str, type] = {
    "kalman": KalmanSmoother,
    "face": FaceLevelSmoother,
    "one-euro": OneEuroSmoother,
    "none": NoSmoothing,
}


def make_smoother(name: str = "face", **params: Any) -> Smoother:
    """A new smoother by name (``kalman``, ``face``, ``one-euro``/``one_euro``, ``none``) with its parameters.

    Raises:
        ValueError: unknown name or invalid parameters.
    """
    key = name.replace("_", "-").lower()
    if key not in SMOOTHERS:
        raise ValueError(f"unknown smoothing {name!r} (choose from: {', '.join(SMOOTHERS)})")
    try:
        return SMOOTHERS[key](**params)
    except TypeError as e:
        raise ValueError(f"invalid parameters for smoothing {name!r}: {e}") from None


__all__ = ["FaceLevelSmoother", "KalmanSmoother", "NoSmoothing", "OneEuroSmoother", "SMOOTHERS", "Smoother", "make_smoother"]
