"""A bank of independent constant-velocity Kalman filters, vectorised: B blocks of dimension d each.

Block b has state (position (d,), velocity (d,)) and a (2d, 2d) covariance. Every block shares the time step;
each has its own process-noise density, measurement covariance (d, d), speed adaptation and innovation gate.
The face-level smoother runs three banks: the rigid similarity (1 block of 4), the shape modes (K blocks of 1)
and the per-landmark residual (N blocks of 2).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .face_model import inv2


def _inv(m: np.ndarray) -> np.ndarray:
    """Inverses of (B, d, d) matrices; closed form for d <= 2 (the common case, far cheaper than LAPACK)."""
    d = m.shape[-1]
    if d == 1:
        return 1.0 / m
    if d == 2:
        return inv2(m)
    if len(m) == 1:  # one face's rigid motion
        return inv_one(m[0])[None]
    if len(m) <= 8:  # a few blocks (the rigid motion of each face)
        return np.stack([inv_one(b) for b in m])
    return np.linalg.inv(m)


def inv_one(m: np.ndarray) -> np.ndarray:
    """Inverse of one small (d, d) matrix: OpenCV's LU, a third of np.linalg.inv's wrapper (which also takes a
    singular one, and raises)."""
    ok, inv = cv2.invert(m, flags=cv2.DECOMP_LU)
    return inv if ok else np.linalg.inv(m)


@lru_cache(maxsize=16)
def _cv_model(d: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """F (2d, 2d) and the process-noise pattern kron([[dt³/3, dt²/2], [dt²/2, dt]], I_d) of a
    constant-velocity block (cached: a video's time step rarely changes, and kron costs more than the filter)."""
    F = np.eye(2 * d)
    F[np.arange(d), np.arange(d) + d] = dt
    pattern = np.kron(np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]]), np.eye(d))
    F.setflags(write=False)
    pattern.setflags(write=False)
    return F, pattern


class CVBank:
    """B constant-velocity Kalman filters of dimension d.

    Process noise: white-noise acceleration of density ``q_b * qdiag_b`` per axis, multiplied by
    (1 + (v / speed_ref)²)² where v is the block's speed (norm of its velocity times ``speed_weight``): a
    still block is smoothed hard, a moving one follows (the Kalman counterpart of One Euro's speed-dependent
    cutoff; the filter bandwidth grows roughly as q^¼, hence the square of a square).

    Gate: when a block's normalised innovation squared (NIS, chi² with d degrees of freedom) exceeds
    ``gate * d``, its predicted covariance is inflated by (NIS / (gate d))² before the update, so a sudden
    movement is followed at once instead of being smoothed away. The square keeps noise just past the gate
    nearly smoothed while a clear movement (NIS several times the gate) gets a gain close to 1.
    """

    def __init__(self, x: np.ndarray, R: np.ndarray, velocity_var: np.ndarray):
        """Start at positions ``x`` (B, d) with covariance ``R`` (B, d, d) and velocity variance (B, d)."""
        b, d = x.shape
        self.d = d
        self.x = np.concatenate([x, np.zeros_like(x)], axis=1)  # (B, 2d)
        self.P = np.zeros((b, 2 * d, 2 * d))
        self.P[:, :d, :d] = R
        self.P[:, d:, d:] = velocity_var[:, :, None] * np.eye(d)
        self.nis = np.zeros(b)
        """(B,) normalised innovation squared of the last update (diagnostics)."""
        self.F: np.ndarray | None = None
        """The transition matrix of the last :meth:`predict` (for fixed-lag smoothing)."""
        self.prior: tuple[np.ndarray, np.ndarray] | None = None
        """The prior (x, P) the last :meth:`update` fused into, gate inflation included (for fixed-lag smoothing:
        an inflated prior is the filter saying the state jumped, so the smoother does not smooth across it)."""

    def predict(self, dt: float, q: np.ndarray, speed_ref: float, speed_weight: np.ndarray | float = 1.0
                ) -> tuple[np.ndarray, np.ndarray]:
        """Prior (x (B, 2d), P (B, 2d, 2d)) at the next frame. ``q`` (B, d): process-noise density per axis
        ((1, d): the same for every block)."""
        F, pattern = _cv_model(self.d, float(dt))
        self.F = F
        if speed_ref > 0:
            v = np.sqrt(((self.x[:, self.d:] * speed_weight) ** 2).sum(1))
            q = q * ((1.0 + (v / speed_ref) ** 2) ** 2)[:, None]
        # Q = kron([[dt³/3, dt²/2], [dt²/2, dt]], diag(q_b)): the pattern times each block's q per axis.
        Q = pattern * np.concatenate([q, q], axis=1)[:, :, None]
        return self.x @ F.T, F @ self.P @ F.T + Q

    def update(self, x: np.ndarray, P: np.ndarray, z: np.ndarray, R: np.ndarray, gate: float,
               groups: np.ndarray | None = None) -> None:
        """Fuse measurements ``z`` (B, d) with covariances ``R`` (B, d, d) into the prior (x, P).

        ``groups`` (B,) int: blocks that gate together (their NIS summed over their degrees of freedom: a blink
        moves the lid points of one eye at once, and their sum stands out of the noise more than any one of them)."""
        d = self.d
        y = z - x[:, :d]
        S = P[:, :d, :d] + R
        Si = _inv(S)
        Siy = (Si @ y[:, :, None])[:, :, 0]
        nis = (y * Siy).sum(1)
        if gate > 0:
            per = nis / d
            if groups is not None:
                per = (np.bincount(groups, nis) / (np.bincount(groups) * d))[groups]
            f = np.maximum(1.0, per / gate) ** 2
            if (f > 1).any():
                P = P * f[:, None, None]
                Si = _inv(P[:, :d, :d] + R)
                Siy = (Si @ y[:, :, None])[:, :, 0]
        self.prior = (x, P)
        K = P[:, :, :d] @ Si  # (B, 2d, d)
        self.x = x + (P[:, :, :d] @ Siy[:, :, None])[:, :, 0]
        P = P - K @ P[:, :d, :]
        P += P.swapaxes(1, 2)
        P *= 0.5
        self.P = P
        self.nis = nis

    @property
    def position(self) -> np.ndarray:
        """(B, d) filtered positions."""
        return self.x[:, :self.d]

    @property
    def position_cov(self) -> np.ndarray:
        """(B, d, d) covariance of the filtered positions."""
        return self.P[:, :self.d, :self.d]
