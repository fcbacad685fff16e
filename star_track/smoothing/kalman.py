"""Uncertainty-aware constant-velocity Kalman filter, vectorised over all landmarks of a face.

Each landmark has state (x, y, vx, vy) in frame pixels and pixels per second. What makes it STAR-specific is
the measurement noise: R = r_scale * Σ + (r_floor * scale)² I, with Σ the landmark's calibrated covariance in
frame pixels (``Face.covariance``: the STAR covariance mapped to the real error, :mod:`star_track.uncertainty`). Where the heatmap is spread along a direction (e.g. along the jaw line) the filter trusts the
measurement less in that direction only, so points slide less along contours while staying responsive across
them.

Process noise is a white-noise acceleration model whose density is ``q * scale²`` (``scale`` = the face's
size in pixels, the side of its landmark box), so behaviour does not depend on video resolution or face size.

Speed-adaptive process noise (``speed_ref`` > 0): the process-noise density is multiplied by
(1 + (v / speed_ref)²)², v = the face's median landmark speed in face sizes per second. A still face gets the
small base ``q`` (heavy smoothing), a moving one a fast-growing q (little lag): the Kalman counterpart of One
Euro's speed-dependent cutoff (the filter bandwidth grows roughly as q^¼, hence the square of a square).

Adaptive gating: when the face's median squared Mahalanobis distance of the innovations d² exceeds ``gate``
(default 2; chi² with 2 degrees of freedom has median 1.39), every landmark's predicted covariance is
inflated by d²/gate before the update, so a sudden head movement is followed at once instead of lagging.
"""
from __future__ import annotations

import numpy as np


class KalmanSmoother:
    """Constant-velocity Kalman filter for (N, 2) landmarks with per-landmark 2x2 measurement covariances.

    Args:
        q: process-noise density in (face sizes / s²)² per Hz. Larger = follows faster, smooths less.
        r_scale: multiplier on the calibrated covariance used as measurement noise. Larger = smoother.
        r_floor: measurement-noise floor as a standard deviation in face sizes (keeps R invertible and guards
            against over-confident heatmaps).
        gate: threshold on the face's median squared Mahalanobis innovation above which every landmark's
            predicted covariance is inflated (0 disables gating; chi² with 2 degrees of freedom has median 1.39).
        init_velocity_std: prior velocity uncertainty for a new track in face sizes per second.
        speed_ref: face speed (face sizes per second) at which the process noise is 4x ``q``; 0 disables the
            speed adaptation (constant q).
    """

    # Defaults measured with the bundled model (benchmarks/stability.py, benchmarks/README.md). The covariance is
    # the calibrated one, so R is on the scale of the real error (no 0.1 fudge for the heatmap's spread any
    # more); r_scale=3 keeps the jitter/lag of the former default (0.1 x raw STAR covariance) in the same run,
    # and the whole r_scale curve matches or beats the raw one at equal lag. q is small for a still face and
    # grows with speed; a low face-level gate follows sudden jumps at once.
    def __init__(self, q: float = 0.1, r_scale: float = 3.0, r_floor: float = 0.004,
                 gate: float = 2.0, init_velocity_std: float = 2.0, speed_ref: float = 0.1):
        if q <= 0 or r_scale < 0 or r_floor < 0 or gate < 0 or init_velocity_std <= 0 or speed_ref < 0:
            raise ValueError("kalman: q and init_velocity_std must be > 0; r_scale, r_floor, gate, speed_ref "
                             "must be >= 0")
        if r_scale == 0 and r_floor == 0:
            raise ValueError("kalman: r_scale and r_floor cannot both be 0 (no measurement noise)")
        self.q, self.r_scale, self.r_floor = float(q), float(r_scale), float(r_floor)
        self.gate, self.init_velocity_std = float(gate), float(init_velocity_std)
        self.speed_ref = float(speed_ref)
        self.reset()

    def reset(self) -> None:
        self.x: np.ndarray | None = None
        """(N, 4) state x, y, vx, vy."""
        self.P: np.ndarray | None = None
        """(N, 4, 4) state covariance."""
        self.last_d2: np.ndarray | None = None
        """(N,) squared Mahalanobis distance of the last innovation (diagnostics)."""

    def measurement_noise(self, cov: np.ndarray, scale: float) -> np.ndarray:
        """R (N, 2, 2) from STAR covariances (N, 2, 2) in frame pixels: symmetrised, negative eigenvalues
        clipped to 0 (closed form), a non-finite covariance counted as face-sized."""
        return clipped_psd(cov, scale, self.r_scale, (self.r_floor * scale) ** 2)

    def update(self, points: np.ndarray, cov: np.ndarray, dt: float = 1 / 30, scale: float = 100.0) -> np.ndarray:
        """Fuse one frame's measurements; returns the filtered positions (N, 2)."""
        z = np.asarray(points, np.float64)
        n = z.shape[0]
        scale = max(float(scale), 1.0)
        R = self.measurement_noise(cov, scale)
        if self.x is None or self.P is None or self.x.shape[0] != n:  # P is set with x
            self.x = np.concatenate([z, np.zeros_like(z)], axis=1)
            self.P = np.zeros((n, 4, 4))
            self.P[:, :2, :2] = R
            self.P[:, 2:, 2:] = np.eye(2) * (self.init_velocity_std * scale) ** 2
            self.last_d2 = np.zeros(n)
            return z.copy()
        dt = max(float(dt), 1e-4)
        qa = self.q * scale**2
        if self.speed_ref > 0:
            # Face speed = its mean landmark velocity: independent landmark noise averages out over the face
            # (68 points: ~8x), common head motion does not.
            vx, vy = self.x[:, 2:].mean(0)
            qa *= (1.0 + (float(np.hypot(vx, vy)) / scale / self.speed_ref) ** 2) ** 2
        F, Q = _transition(dt, qa)
        x = self.x @ F.T
        P = F @ self.P @ F.T + Q
        y = z - x[:, :2]
        Si = _inv2(P[:, :2, :2] + R)
        d2 = np.einsum("ni,nij,nj->n", y, Si, y)
        if self.gate > 0:
            # Face level: the whole head moved. A single landmark's large innovation is more likely an outlier
            # (occlusion, a bad heatmap) than motion, so it does not open the gate on its own.
            f = _median(d2) / self.gate
            if f > 1.0:
                P = P * f
                Si = _inv2(P[:, :2, :2] + R)
        K = P[:, :, :2] @ Si  # (N, 4, 2)
        self.x = x + (K @ y[:, :, None])[:, :, 0]
        # P - K S Kᵀ = P - K H P (optimal gain), symmetrised: the Joseph form's result at a third of the calls
        P = P - K @ P[:, :2, :]
        self.P = 0.5 * (P + np.swapaxes(P, 1, 2))
        self.last_d2 = d2
        return self.x[:, :2].copy()


def _transition(dt: float, qa: float) -> tuple[np.ndarray, np.ndarray]:
    """F and Q (4x4, state order x, y, vx, vy) of the constant-velocity model, built from Python floats."""
    a, b, c = qa * dt**3 / 3, qa * dt**2 / 2, qa * dt
    F = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    Q = np.array([[a, 0, b, 0], [0, a, 0, b], [b, 0, c, 0], [0, b, 0, c]])
    return F, Q


def _median(v: np.ndarray) -> float:
    """Median of a 1-D array by one partition (np.median costs several calls more; NaN sorts last)."""
    n = len(v)
    mid = np.partition(v, [(n - 1) // 2, n // 2])
    return 0.5 * float(mid[(n - 1) // 2] + mid[n // 2])


def _inv2(m: np.ndarray) -> np.ndarray:
    """Inverses of (N, 2, 2) matrices, closed form (LAPACK's batched inverse costs more than the algebra)."""
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    out = np.stack([m[:, 1, 1], -m[:, 0, 1], -m[:, 1, 0], m[:, 0, 0]], -1).reshape(-1, 2, 2)
    return out / det[:, None, None]


def clipped_psd(cov: np.ndarray, scale: float | np.ndarray, r_scale: float, floor: float | np.ndarray) -> np.ndarray:
    """``r_scale`` Σ⁺ + ``floor`` I with Σ⁺ the symmetrised Σ (N, 2, 2) with negative eigenvalues set to 0,
    in closed form: with eigenvalues l1 <= l2, Σ⁺ = Σ - l1 (l2 I - Σ) / (l2 - l1) when l1 < 0 <= l2 (the
    projector onto l1's eigenvector times l1 removed), 0 when l2 < 0. A non-finite Σ counts as
    ``scale``² I (a face-sized uncertainty)."""
    c = np.asarray(cov, np.float64)
    a, d, b = c[:, 0, 0], c[:, 1, 1], 0.5 * (c[:, 0, 1] + c[:, 1, 0])
    bad = ~np.isfinite(a + b + d)
    if bad.any():
        a, b, d = np.where(bad, scale**2, a), np.where(bad, 0.0, b), np.where(bad, scale**2, d)
    m, r = 0.5 * (a + d), np.hypot(0.5 * (a - d), b)
    lo, hi = m - r, m + r
    if (lo < 0).any():
        neg, pos = lo < 0, hi > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            g = np.where(neg & pos, -lo / (hi - lo), 0.0)  # Σ⁺ = Σ + g (l2 I - Σ)
        keep = ~neg | pos  # both eigenvalues negative: nothing left
        a, d, b = (a + g * (hi - a)) * keep, (d + g * (hi - d)) * keep, b * (1 - g) * keep
    out = np.empty((len(a), 2, 2))
    out[:, 0, 0] = r_scale * a + floor
    out[:, 1, 1] = r_scale * d + floor
    out[:, 0, 1] = out[:, 1, 0] = r_scale * b
    return out
