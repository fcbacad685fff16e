"""Several running face-level smoothers updated as one: the faces of a frame stacked through the same steps as
:meth:`FaceLevelSmoother.update` (the cost of a small numpy call is paid once per frame instead of once per face).

Only the common case is stacked: smoothers already running, with the same point count and settings, no shape
modes, every landmark measured. Anything else updates on its own (:func:`star_track.smoothing.batched.update_all`
decides). The results are those of the separate updates up to float rounding (stacked products sum in another
order; tested to 1e-9 px). The noise-level trackers, a few scalars per face, run per face (their own methods).
"""
from __future__ import annotations

from typing import TypeGuard

import numpy as np

from .cv_bank import CVBank, _inv
from .face_level import FaceLevelSmoother
from .face_model import J, inv2, measurement_noise

SETTINGS = ("r_scale", "r_floor", "q_rigid", "rigid_speed_ref", "rigid_gate", "q_residual", "residual_gate",
            "isotropic", "noise_window", "rigid_r_scale", "n_points")


def stackable(f: object, n: int, points: np.ndarray) -> TypeGuard[FaceLevelSmoother]:
    """Whether smoother ``f`` can join a stacked update with ``points`` (N, 2) (not a subclass: it may override
    ``update``)."""
    return type(f) is FaceLevelSmoother and f.rigid_bank is not None and f.residual_bank is not None and f.k == 0 \
        and not f.lookahead and f.n_points == n and bool(np.isfinite(points).all())


def settings_key(f: FaceLevelSmoother) -> tuple:
    return tuple(getattr(f, name) for name in SETTINGS)


def _stack(banks: list[CVBank]) -> CVBank:
    out = CVBank.__new__(CVBank)
    out.d = banks[0].d
    out.x = np.concatenate([b.x for b in banks])
    out.P = np.concatenate([b.P for b in banks])
    out.nis = np.concatenate([b.nis for b in banks])
    return out


def _unstack(stacked: CVBank, banks: list[CVBank]) -> None:
    start = 0
    for b in banks:
        stop = start + len(b.x)
        b.x, b.P, b.nis = stacked.x[start:stop], stacked.P[start:stop], stacked.nis[start:stop]
        start = stop


def _rotations(p: np.ndarray) -> np.ndarray:
    """(S, 2, 2) s R(theta) of rigid motions p (S, 4) = (t_x, t_y, log s, theta)."""
    c, s = np.cos(p[:, 3]), np.sin(p[:, 3])
    return np.exp(p[:, 2])[:, None, None] * np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _solve(z: np.ndarray, W: np.ndarray, p: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`FaceLevelSmoother._solve` (one step, up to 2 more while rotation or scale still move) for S faces:
    z, W (S, N, 2[, 2]), p (S, 4), base (S, N, 2). A face stops where it alone would."""
    s_, n = z.shape[:2]
    active = np.ones(s_, bool)
    cov = np.zeros((s_, 4, 4))
    for _ in range(3):
        g = base @ np.swapaxes(_rotations(p), 1, 2)
        H = np.empty((s_, n, 2, 4))
        H[..., 0], H[..., 1] = (1.0, 0.0), (0.0, 1.0)
        H[..., 2], H[..., 3] = g, g @ J.T
        WH = (W @ H).reshape(s_, -1, 4)
        A = np.swapaxes(H.reshape(s_, -1, 4), 1, 2) @ WH
        A = A + (1e-12 * np.trace(A, axis1=1, axis2=2) / 4)[:, None, None] * np.eye(4)
        c = _inv(A)
        r = (z - g - p[:, None, :2]).reshape(s_, -1, 1)
        delta = (c @ (np.swapaxes(WH, 1, 2) @ r))[:, :, 0]
        p = np.where(active[:, None], p + delta, p)
        cov = np.where(active[:, None, None], c, cov)
        active &= ~((np.abs(delta[:, 2]) < 0.02) & (np.abs(delta[:, 3]) < 0.02))
        if not active.any():
            break
    return p, cov


def update_faces(fs: list[FaceLevelSmoother], points: list[np.ndarray], covs: list[np.ndarray], dt: float,
                 scales: list[float]) -> list[np.ndarray]:
    """``fs[i].update(points[i], covs[i], dt, scales[i])`` for running smoothers of one :func:`settings_key`
    (each :func:`stackable`), stacked; returns the filtered (N, 2) positions of each."""
    f0, s_ = fs[0], len(fs)
    z = np.stack(points).astype(np.float64)
    n = z.shape[1]
    sc = np.maximum(np.asarray(scales, np.float64), 1.0)
    sig = measurement_noise(np.concatenate(covs).reshape(-1, 2, 2), np.repeat(sc, n), 1.0, 0.0).reshape(s_, n, 2, 2)
    if f0.isotropic:
        level = (sig[..., 0, 0] + sig[..., 1, 1]).mean(1) / 2
        sig = np.broadcast_to(level[:, None, None, None] * np.eye(2), sig.shape).copy()
    floor = (f0.r_floor * sc) ** 2
    noise = np.exp([f.log_noise for f in fs])[:, None, None, None]  # the noise levels before this frame's update
    R = f0.r_scale * noise * sig + floor[:, None, None, None] * np.eye(2)
    dt = max(float(dt), 1e-4)
    rho = np.array([f.rho for f in fs])
    rigid, resid = _stack([f.rigid_bank for f in fs]), _stack([f.residual_bank for f in fs])  # type: ignore[misc]
    xr, Pr = rigid.predict(dt, f0.q_rigid * np.stack([sc ** 2, sc ** 2, rho ** -2.0, rho ** -2.0], 1),
                           f0.rigid_speed_ref, np.stack([1 / sc, 1 / sc, rho, rho], 1))
    xe, Pe = resid.predict(dt, np.full((1, 2), f0.q_residual), 0.0)
    mean = np.stack([f.mean for f in fs])
    p, jc = _solve(z, inv2(R.reshape(-1, 2, 2)).reshape(R.shape), xr[:, :4], mean + xe[:, :2].reshape(s_, n, 2))
    for f, pi, ci in zip(fs, p, jc):  # a few scalars per face: the face's own method
        f.track_rigid_noise(pi, ci, dt)
    rigid.update(xr, Pr, p, f0.rigid_r_scale * np.exp([f.log_rigid for f in fs])[:, None, None] * jc, f0.rigid_gate)
    # Into each face's frame (FaceLevelSmoother._to_face): x = (z - t) R / s, Σ_face = Rᵀ Σ R / s².
    s2 = np.exp(2 * p[:, 2])
    rot = _rotations(p) / np.exp(p[:, 2])[:, None, None]
    x = (z - p[:, None, :2]) @ rot / np.exp(p[:, 2])[:, None, None]
    sig_f = np.swapaxes(rot, 1, 2)[:, None] @ sig @ rot[:, None] / s2[:, None, None, None]
    Rf = f0.r_scale * noise * sig_f + (floor / s2)[:, None, None, None] * np.eye(2)
    for f, xi, si in zip(fs, x, sig_f):
        f.track_noise(xi, si, dt)
    groups, start = [], 0
    for f in fs:  # each face's parts numbered after the previous face's
        if f.point_group is not None:
            groups.append(f.point_group + start)
            start += int(f.point_group.max()) + 1
    resid.update(xe, Pe, (x - mean).reshape(-1, 2), Rf.reshape(-1, 2, 2), f0.residual_gate,
                 np.concatenate(groups) if len(groups) == s_ else None)
    _unstack(rigid, [f.rigid_bank for f in fs])  # type: ignore[misc]
    _unstack(resid, [f.residual_bank for f in fs])  # type: ignore[misc]
    pos = rigid.position
    out = (mean + resid.position.reshape(s_, n, 2)) @ np.swapaxes(_rotations(pos), 1, 2) + pos[:, None, :2]
    return list(out)
