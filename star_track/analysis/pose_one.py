"""The batched head-pose solve (:mod:`.pose_batch`, :mod:`.pose_step`) for one face: the video common case.

The same Gauss-Newton steps, weighting, Huber weights, Cayley update and convergence test as
:func:`.pose_step.gauss_newton_step` and ``pose_batch._solve`` (results equal to about 1e-12), written so that a
frame with one face costs about half as many numpy calls:

* the pose is kept in Python floats between steps; one (8, 4) matrix built from them gives, in one product with
  the homogeneous mean face, both the rotated model P = R X (rows x, y, z, x, y, for the cross product) and the
  camera-frame points Q = R X + t;
* the whitened residual is ``L q / z - L x_n`` with ``L x_n`` computed once per frame, and ``L q / z`` is also
  the whitened depth row of the Jacobian, so the step has no separate residual product;
* the Jacobian is built negated (the residual too): J^T J and J^T e are unchanged and no negation is spent;
* a Huber weight is only applied when some point's whitened error exceeds the threshold (the weight is exactly
  1 otherwise); ``J J^T`` is OpenCV's ``mulTransposed``, the 6x6 inverse OpenCV's Cholesky, and the update of
  the rotation (Cayley) and translation is Python float arithmetic.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from .pose import Camera
from .pose_step import inverse


@lru_cache(maxsize=16)
def _cov_scale(cam: Camera) -> np.ndarray:
    """(4, 1) px^2 -> normalised units for the flattened 2x2 covariance (xx, xy, yx, yy)."""
    sxy = 1.0 / (cam.fx * cam.fy)
    return np.array([[1.0 / (cam.fx * cam.fx)], [sxy], [sxy], [1.0 / (cam.fy * cam.fy)]])


def whitening_one(cov: np.ndarray | None, cam: Camera, extra: np.ndarray, xn: np.ndarray, out: np.ndarray
                  ) -> np.ndarray:
    """One face's :func:`.pose_step.whitening` (2, 2, N), written into ``out[:2]`` (``cov`` (N, 2, 2) px^2 or
    None, ``extra`` (N,)); returns the whitened points ``L x_n`` (2, N) of its normalised points ``xn`` (2, N)."""
    n = len(extra)
    if cov is None:
        s = np.empty((4, n))
        s[0] = 1.0 / (cam.fx * cam.fx) + extra
        s[1] = 0.0
        s[3] = 1.0 / (cam.fy * cam.fy) + extra
    else:
        s = cov.reshape(n, 4).T * _cov_scale(cam)  # rows xx, xy, yx, yy
        s[::3] += extra
    sxx, sxy, syy = s[0], s[1], s[3]
    w = out[:2]
    isyy = 1.0 / syy
    a = np.sqrt(syy / (sxx * syy - sxy * sxy), out=w[0, 0])
    np.multiply(-sxy * a, isyy, out=w[1, 0])
    np.sqrt(isyy, out=w[1, 1])
    lx = w * xn[:, None]
    return lx[0] + lx[1]


def homogeneous(points_t: np.ndarray) -> np.ndarray:
    """(4, N) the mean face's (3, N) points with a row of ones."""
    return np.concatenate([points_t, np.ones((1, points_t.shape[1]))])


# d/dw = P x (d/dt) for R <- exp([w]x) R, from the 9 products P_a (d/dt)_b (row 3 a + b): row k is
# P_(k+1) (d/dt)_(k+2) - P_(k+2) (d/dt)_(k+1). One product with +-1 and 0: exact.
_CROSS = np.zeros((3, 9))
_CROSS[0, 5], _CROSS[0, 7], _CROSS[1, 6], _CROSS[1, 2], _CROSS[2, 1], _CROSS[2, 3] = 1, -1, 1, -1, 1, -1


def _step(xh: np.ndarray, wu: np.ndarray, wxn: np.ndarray, jw: np.ndarray, prod: np.ndarray, r: list, t: list,
          huber: float) -> tuple[list, np.ndarray, float]:
    """One Gauss-Newton step from (r, t): (step (w, dt) as 6 floats, H^-1, predicted chi2 after the step).

    ``wu`` (3, 2, N): the whitening in rows 0-1, row 2 a work row; ``jw`` (7, 2, N) and ``prod`` (9, 2, N) work
    arrays."""
    r0, r1, r2, r3, r4, r5, r6, r7, r8 = r
    pq = np.dot(np.array([r0, r1, r2, 0.0, r3, r4, r5, 0.0, r6, r7, r8, 0.0,
                          r0, r1, r2, t[0], r3, r4, r5, t[1], r6, r7, r8, t[2]]).reshape(6, 4), xh)
    # pq rows: P = R X (x, y, z), then Q = P + t.
    niz = -1.0 / pq[5]  # minus 1 / depth: the Jacobian and the residual come out negated, J^T J and J^T e not
    lq = wu[:2] * (pq[3:5] * niz)[:, None]
    u = np.add(lq[0], lq[1], out=wu[2])  # -L q / z
    np.add(u, wxn, out=jw[0])  # minus the whitened residual
    k = niz
    hyp = np.hypot(jw[0, 0], jw[0, 1])
    if hyp.max() > huber:  # Huber: such points count as if their covariance were larger (weight 1 elsewhere)
        sw = np.sqrt(huber / np.maximum(huber, hyp))
        jw[0] *= sw
        k = sw * niz
    # Rows d/dt x, y, z: the whitening times k, and d/dt z = -(x d/dt x + y d/dt y) / z (negated: k u).
    dt = np.multiply(wu, k, out=jw[4:])
    np.multiply(pq[:3, None, None], dt[None], out=prod.reshape(3, 3, 2, -1))
    np.dot(_CROSS, prod, out=jw[1:4].reshape(3, -1))
    mm = cv2.mulTransposed(jw.reshape(7, -1), False)  # [[e^T e, g^T], [g, H]] in one product
    done, hinv = cv2.invert(mm[1:, 1:], flags=cv2.DECOMP_CHOLESKY)
    if not done:
        hinv = inverse(mm[None, 1:, 1:])[0]
    row = mm[0].tolist()
    step = np.dot(hinv, mm[0, 1:]).tolist()
    # step = -H^-1 g; chi2 = e^T e + g^T step, Gauss-Newton's prediction after it.
    return [-s for s in step], hinv, row[0] - sum(g * s for g, s in zip(row[1:], step))


def _turn(w0: float, w1: float, w2: float, r: list) -> list:
    """The rotation ``r`` (9 floats, row-major) turned by the camera-frame angles w: ``pose_batch.turn``."""
    c0, c1, c2 = 0.5 * w0, 0.5 * w1, 0.5 * w2
    cc = c0 * c0 + c1 * c1 + c2 * c2
    g = 2.0 / (1.0 + cc)
    m0, m1, m2 = g * (c0 * c0 - cc), g * (c0 * c1 - c2), g * (c0 * c2 + c1)
    m3, m4, m5 = g * (c1 * c0 + c2), g * (c1 * c1 - cc), g * (c1 * c2 - c0)
    m6, m7, m8 = g * (c2 * c0 - c1), g * (c2 * c1 + c0), g * (c2 * c2 - cc)
    r0, r1, r2, r3, r4, r5, r6, r7, r8 = r
    return [r0 + (m0 * r0 + m1 * r3 + m2 * r6), r1 + (m0 * r1 + m1 * r4 + m2 * r7), r2 + (m0 * r2 + m1 * r5 + m2 * r8),
            r3 + (m3 * r0 + m4 * r3 + m5 * r6), r4 + (m3 * r1 + m4 * r4 + m5 * r7), r5 + (m3 * r2 + m4 * r5 + m5 * r8),
            r6 + (m6 * r0 + m7 * r3 + m8 * r6), r7 + (m6 * r1 + m7 * r4 + m8 * r7), r8 + (m6 * r2 + m7 * r5 + m8 * r8)]


def solve_one(xn: np.ndarray, cov: np.ndarray | None, cam: Camera, xh: np.ndarray, sigma2: np.ndarray, r: list,
              t: list, limit: int, tol: float, huber: float) -> tuple[list, list, np.ndarray, float, list, float]:
    """Gauss-Newton for one face from the rotation ``r`` (9 floats) and translation ``t`` (3 floats):
    ``pose_batch._solve`` for F = 1. ``xn`` (2, N) normalised points, ``cov`` (N, 2, 2) px^2 or None, ``xh``
    :func:`homogeneous` mean face, ``sigma2`` (N,) its model variances in cm^2.

    Returns (r, t, H^-1 (6, 6), predicted chi2, the sum of the rotation steps, the last rotation step's
    largest component (NaN when not finite))."""
    # Whitening once, at the starting scale, as pose_batch._solve does.
    n = xn.shape[1]
    wu = np.zeros((3, 2, n))  # whitening entry (0, 1) is 0
    wxn = whitening_one(cov, cam, sigma2 / (t[2] * t[2]), xn, wu)
    jw, prod = np.empty((7, 2, n)), np.empty((9, 2 * n))
    m0 = m1 = m2 = 0.0
    for _ in range(max(1, limit)):
        s, hinv, chi2 = _step(xh, wu, wxn, jw, prod, r, t, huber)
        w0, w1, w2 = s[0], s[1], s[2]
        r = _turn(w0, w1, w2, r)
        t = [t[0] + s[3], t[1] + s[4], t[2] + s[5]]
        m0, m1, m2 = m0 + w0, m1 + w1, m2 + w2
        big = max(abs(w0), abs(w1), abs(w2)) if math.isfinite(w0 + w1 + w2) else math.nan
        if big <= tol:
            break
    return r, t, hinv, chi2, [m0, m1, m2], big
