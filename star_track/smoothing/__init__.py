"""Temporal smoothing of landmark tracks: ``kalman`` (per-landmark, STAR-covariance aware), ``face`` (face-level:
rigid motion + shape modes + residual, STAR-covariance weighted), ``one-euro``, ``none``.

``make_smoother(name, **params)`` returns a fresh filter; the tracker calls it once per face track. The face-level
filter can also revise each frame with the next few (``lookahead``, for recorded video: :data:`LOOKAHEAD_TUNING`).
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

LOOKAHEAD_TUNING: dict[str, Any] = {"q_rigid": 7e-5, "rigid_r_scale": 10.0}
"""The face-level filter's settings with look-ahead (``lookahead`` > 0), where not given: the revision takes the
lag out of a heavier filter, so the head's motion is filtered much harder (``rigid_r_scale``) and its process
noise raised to follow fast heads. From the stability benchmark (``benchmarks/README.md``, look-ahead: real clips,
synthetic lags, lip gap and blinks)."""

RECORDED_LOOKAHEAD = 8
"""Look-ahead frames ``star-track video`` and ``batch`` use (recorded video: the delay costs nothing there)."""


def default_lookahead(smoothing: str) -> int:
    """The look-ahead for recorded video with ``smoothing``: :data:`RECORDED_LOOKAHEAD` for the face-level filter
    (the one that revises past frames), else 0."""
    return RECORDED_LOOKAHEAD if smoothing.replace("_", "-").lower() == "face" else 0


MAX_LOOKAHEAD = 64
"""The most look-ahead frames a Tracker takes (each waiting frame is held in memory; beyond ~8 little changes)."""


def make_smoother(name: str = "face", **params: Any) -> Smoother:
    """A new smoother by name (``kalman``, ``face``, ``one-euro``/``one_euro``, ``none``) with its parameters.

    Raises:
        ValueError: unknown name or invalid parameters.
    """
    key = name.replace("_", "-").lower()
    if key not in SMOOTHERS:
        raise ValueError(f"unknown smoothing {name!r} (choose from: {', '.join(SMOOTHERS)})")
    if key == "face" and params.get("lookahead"):
        params = {**LOOKAHEAD_TUNING, **params}
    try:
        return SMOOTHERS[key](**params)
    except TypeError as e:
        raise ValueError(f"invalid parameters for smoothing {name!r}: {e}") from None


__all__ = ["FaceLevelSmoother", "KalmanSmoother", "LOOKAHEAD_TUNING", "MAX_LOOKAHEAD", "RECORDED_LOOKAHEAD", "NoSmoothing", "OneEuroSmoother", "SMOOTHERS", "Smoother", "default_lookahead", "make_smoother"]
