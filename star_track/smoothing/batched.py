"""All faces of a frame through their smoothers at once: the per-landmark Kalman filters of every face that is
already running (same point count and settings) update as one stacked filter, and so do the face-level filters
(:mod:`star_track.smoothing.face_batch`), so the per-frame cost grows by far less than one filter per extra face
(numpy call count, not arithmetic, is the cost at these sizes). Every other smoother (a new track, another kind,
other settings, a face-level filter with a missing landmark, a subclass) updates on its own. The results are those of the
separate updates (same equations, per face: speed adaptation, gate and noise floor)."""
from __future__ import annotations

from typing import cast

import numpy as np

from .base import Smoother
from .face_batch import settings_key, stackable, update_faces
from .face_level import FaceLevelSmoother
from .kalman import KalmanSmoother, _inv2, _transition, clipped_psd


def update_all(smoothers: list[Smoother], points: list[np.ndarray], covs: list[np.ndarray], dt: float,
               scales: list[float]) -> list[np.ndarray]:
    """``smoothers[i].update(points[i], covs[i], dt, scales[i])`` for every i; returns the smoothed points."""
    out: list[np.ndarray | None] = [None] * len(smoothers)
    groups: dict[tuple, list[int]] = {}
    for i, (sm, p) in enumerate(zip(smoothers, points)):
        # Exact types: a subclass may override update(), which the stacked update would bypass.
        if type(sm) is KalmanSmoother and sm.x is not None and sm.x.shape[0] == len(p):
            groups.setdefault(("kalman", len(p), sm.q, sm.r_scale, sm.r_floor, sm.gate, sm.speed_ref), []).append(i)
        elif stackable(sm, len(p), p):
            groups.setdefault(("face", *settings_key(sm)), []).append(i)
    for key, idx in groups.items():
        if len(idx) > 1:
            args = ([points[i] for i in idx], [covs[i] for i in idx], dt, [scales[i] for i in idx])
            chosen = [smoothers[i] for i in idx]
            res = _kalman_stack(chosen, *args) if key[0] == "kalman" else \
                update_faces(cast(list[FaceLevelSmoother], chosen), *args)
            for i, r in zip(idx, res):
                out[i] = r
    return [r if r is not None else sm.update(p, c, dt, s)
            for r, sm, p, c, s in zip(out, smoothers, points, covs, scales)]


def _kalman_stack(filters: list, points: list[np.ndarray], covs: list[np.ndarray], dt: float,
                  scales: list[float]) -> np.ndarray:
    """:meth:`KalmanSmoother.update` of B running filters with equal settings on their (N, 2) points at once."""
    f0: KalmanSmoother = filters[0]
    z, cov = np.stack(points).astype(np.float64), np.stack(covs)
    b, n = z.shape[:2]
    sc = np.maximum(np.asarray(scales, np.float64), 1.0)
    per_point = np.repeat(sc, n)
    R = clipped_psd(cov.reshape(-1, 2, 2), per_point, f0.r_scale, (f0.r_floor * per_point) ** 2)
    dt = max(float(dt), 1e-4)
    x0 = np.stack([f.x for f in filters])  # (B, N, 4)
    qa = f0.q * sc**2
    if f0.speed_ref > 0:
        v = x0[:, :, 2:].mean(1)
        qa = qa * (1.0 + (np.hypot(v[:, 0], v[:, 1]) / sc / f0.speed_ref) ** 2) ** 2
    F, unit_q = _transition(dt, 1.0)
    x = (x0 @ F.T).reshape(-1, 4)
    P = F @ np.stack([f.P for f in filters]) @ F.T + unit_q * qa[:, None, None, None]  # (B, N, 4, 4)
    P = P.reshape(-1, 4, 4)
    y = z.reshape(-1, 2) - x[:, :2]
    Si = _inv2(P[:, :2, :2] + R)
    d2 = np.einsum("ni,nij,nj->n", y, Si, y)
    if f0.gate > 0:
        mid = np.partition(d2.reshape(b, n), [(n - 1) // 2, n // 2], axis=1)
        f = np.maximum(1.0, 0.5 * (mid[:, (n - 1) // 2] + mid[:, n // 2]) / f0.gate)
        if (f > 1.0).any():
            P = P * np.repeat(f, n)[:, None, None]
            Si = _inv2(P[:, :2, :2] + R)
    K = P[:, :, :2] @ Si
    x = x + (K @ y[:, :, None])[:, :, 0]
    P = P - K @ P[:, :2, :]
    P = (0.5 * (P + np.swapaxes(P, 1, 2))).reshape(b, n, 4, 4)
    x = x.reshape(b, n, 4)
    d2 = d2.reshape(b, n)
    for i, flt in enumerate(filters):
        flt.x, flt.P, flt.last_d2 = x[i], P[i], d2[i]
    return x[:, :, :2].copy()
