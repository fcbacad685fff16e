"""One Gauss-Newton step of the batched head-pose solve (:mod:`.pose_batch`) for every face of a frame at once.

At 68 points a numpy call costs far more than its arithmetic (a few thousand instructions each), so the number
and kind of calls, not N, set the time: the whitening is one (F, 2, 2, N) array that whitens the residuals and
the translation rows alike, the Jacobian is built in place in one array, its rotation rows are a cross product
of slices (no fancy-indexed copies), and one face's 6x6 inverse is OpenCV's (np.linalg.inv's Python wrapper
costs three times as much).
"""
from __future__ import annotations

import cv2
import numpy as np

from .pose import Camera

# Rows of R taken so that rows 1:4 and 2:5 of R[_CYCLE] X are P's rows (1, 2, 0) and (2, 0, 1), P = R X: the two
# cyclic shifts of a cross product, as slices.
_CYCLE = np.array([0, 1, 2, 0, 1])


def whitening(cov: np.ndarray | None, cam: Camera, extra: np.ndarray) -> np.ndarray:
    """(F, 2, 2, N) ``w``, ``w[:, j, c]`` the entry (c, j) of the upper-triangular L = [[a, b], [0, c]] with
    L^T L = S^-1 (normalised units): ``(w * res[:, :, None]).sum(1)`` whitens residuals ``res`` (F, 2, N).

    ``cov``: (F, N, 2, 2) px^2 (None: 1 px^2 each); ``extra``: (F, N) the model variance added to both axes."""
    if cov is None:
        sxx = 1.0 / (cam.fx * cam.fx) + extra
        syy = 1.0 / (cam.fy * cam.fy) + extra
        sxy = np.zeros_like(extra)
    else:
        sxx = cov[..., 0, 0] * (1.0 / (cam.fx * cam.fx)) + extra
        sxy = cov[..., 0, 1] * (1.0 / (cam.fx * cam.fy))
        syy = cov[..., 1, 1] * (1.0 / (cam.fy * cam.fy)) + extra
    # Cholesky of the inverse in closed form: c = syy^-1/2, a = (syy / det)^1/2, b = -sxy a / syy; written
    # straight into their places.
    w = np.empty((len(sxx), 2, 2, sxx.shape[1]))
    isyy = 1.0 / syy
    a = np.sqrt(syy / (sxx * syy - sxy * sxy), out=w[:, 0, 0])
    np.multiply(-sxy * a, isyy, out=w[:, 1, 0])
    np.sqrt(isyy, out=w[:, 1, 1])
    w[:, 0, 1] = 0.0
    return w


def inverse(h: np.ndarray) -> np.ndarray:
    """(F, 6, 6) inverses of the normal matrices; a degenerate face (points on a line) gets the pseudo-inverse
    (no step for it, infinite sd)."""
    if len(h) == 1:  # one face: OpenCV's Cholesky costs a third of np.linalg.inv's wrapper (checks, errstate)
        done, hinv = cv2.invert(h[0], flags=cv2.DECOMP_CHOLESKY)
        if done:
            return hinv[None]
    try:
        return np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(h)


def gauss_newton_step(xn: np.ndarray, rot: np.ndarray, t: np.ndarray, model: np.ndarray, white: np.ndarray,
                      huber: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step for every face: (step (F, 6), H^-1 (F, 6, 6), Gauss-Newton's predicted chi2 after it (F,)).

    ``xn``: (F, 2, N) normalised image points; ``rot`` (F, 3, 3), ``t`` (F, 3) the current poses; ``model``:
    (3, N) the mean face's points; ``white``: :func:`whitening`. The step is (w, dt) for ``R <- exp([w]x) R``, ``t <- t + dt``.
    """
    p = rot[:, _CYCLE] @ model  # (F, 5, N): rows x, y, z, x, y of P = R X, the model in camera axes
    q = p[:, :3] + t[:, :, None]
    iz = 1.0 / q[:, 2:3]  # (F, 1, N) 1 / depth
    xy = q[:, :2] * iz
    res = xy - xn
    e = (white * res[:, :, None]).sum(1)  # (F, 2, N) whitened residuals
    # Huber: a point whose whitened error exceeds `huber` counts as if its covariance were larger.
    sw = np.sqrt(huber / np.maximum(huber, np.hypot(e[:, :1], e[:, 1:])))  # (F, 1, N)
    f, n = xn.shape[0], xn.shape[2]
    # Rows, each for both whitened residuals of every point, (F, 9, 2, N): [residual, d/dw (3), d/dt (3), d/dt
    # rows 0 and 1 again (for the cross product)]. d(x, y)/dt = (1, 0, -x) / z, (0, 1, -y) / z, whitened.
    jw = np.empty((f, 9, 2, n))
    np.multiply(e, sw, out=jw[:, 0])
    dt = jw[:, 4:]
    np.multiply(white, (sw * iz)[:, None], out=dt[:, :2])
    np.negative((dt[:, :2] * xy[:, :, None]).sum(1), out=dt[:, 2])
    dt[:, 3:] = dt[:, :2]
    # d/dw = P x (d/dt) for R <- exp([w]x) R: rows (1, 2, 0) times rows (2, 0, 1) minus the reverse.
    np.subtract(p[:, 1:4, None] * dt[:, 2:], p[:, 2:5, None] * dt[:, 1:4], out=jw[:, 1:4])
    jf = jw[:, :7].reshape(f, 7, 2 * n)
    mm = jf @ jf.transpose(0, 2, 1)  # [[e^T e, g^T], [g, H]] in one product
    h, g = mm[:, 1:, 1:], mm[:, 1:, :1]
    hinv = inverse(h)
    step = -(hinv @ g)
    chi2 = mm[:, 0, 0] + (g.transpose(0, 2, 1) @ step)[:, 0, 0]  # Gauss-Newton's prediction after the step
    return step[..., 0], hinv, chi2
