"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012), vectorised over all landmarks of a face.

A low-pass filter whose cutoff rises with speed: slow motion is smoothed hard (little jitter), fast motion
gets a high cutoff (little lag). Speeds are measured in face sizes per second so the same parameters work at
any resolution.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroSmoother:
    """One Euro filter on (N, 2) points.

    Args:
        min_cutoff: cutoff frequency in Hz at zero speed; lower = smoother but laggier when still.
        beta: cutoff increase per unit speed (face sizes per second); higher = less lag in fast motion.
        d_cutoff: cutoff in Hz of the low-pass on the derivative.
    """

    # Defaults from the stability sweep (benchmarks/README.md): the best jitter/lag trade-off of One Euro there.
    def __init__(self, min_cutoff: float = 0.25, beta: float = 30.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("one-euro: min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def update(self, points: np.ndarray, cov: np.ndarray | None = None, dt: float = 1 / 30,
               scale: float = 1.0) -> np.ndarray:
        x = np.asarray(points, np.float64)
        if self._x is None or self._dx is None or self._x.shape != x.shape:  # _dx is set with _x
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dt = max(float(dt), 1e-6)
        scale = max(float(scale), 1e-6)
        dx = (x - self._x) / dt / scale  # face sizes per second
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()
