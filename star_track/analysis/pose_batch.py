"""Head pose of all faces of a frame at once: vectorised, covariance-weighted Gauss-Newton (the fast path).

Same problem, conventions and weighting as :func:`star_track.analysis.pose.solve_pose` (see its module docs
for the angle signs): minimise sum_i r_i^T S_i^-1 r_i over the 6 pose parameters of each face, with
S_i = C_i + (s sigma_i)^2 I (calibrated landmark covariance plus the mean face's model uncertainty at the
face's scale) and a Huber weight on each whitened residual. What differs is how, so that a frame's faces cost a
few tens of microseconds together rather than ~0.3 ms each:

* every face of the frame is one slice of (F, N) arrays: no Python loop over faces or landmarks;
* the residuals are in normalised image coordinates ((u - cx) / fx, ...), which drops the focal length from
  the Jacobian, and the Jacobian is written out in closed form for a rotation updated on the left
  (``R <- exp([w]x) R``, ``w`` a camera-frame angle; :mod:`.pose_step`), so ``(J^T S^-1 J)^-1`` is directly the
  covariance of the camera-frame rotation that the angle sd needs;
* a cold start is a closed-form weak-perspective fit (a precomputed (3, N) least-squares map from the landmarks
  to the two image rows of the rotation, weighted by the mean face's certainty) instead of SQPnP per face;
* a warm start (video: the previous frame's pose) takes one step, and more only for faces whose step was large.
"""
from __future__ import annotations

from collections.abc import Sequence
import math
from dataclasses import dataclass
from typing import NamedTuple
from functools import lru_cache

import numpy as np

from .mean_face import MeanFace, mean_face
from .pose import Camera, Pose, PoseError
from .pose_angles import pose_angles
from .pose_one import homogeneous, solve_one
from .pose_step import gauss_newton_step, whitening


@dataclass
class PoseArrays:
    """Poses of F faces as arrays (what :func:`solve_pose_arrays` returns; :meth:`poses` makes :class:`Pose`)."""

    rotation: np.ndarray
    """(F, 3, 3) object-to-camera rotations, OpenCV convention."""
    translation: np.ndarray
    """(F, 3) translations in cm (mean-face units)."""
    angles: np.ndarray
    """(F, 3) yaw, pitch, roll in degrees (300W-LP convention, see :mod:`star_track.analysis.pose`)."""
    angles_sd: np.ndarray
    """(F, 3) standard deviation of each angle in degrees."""
    rotation_cov: np.ndarray
    """(F, 3, 3) covariance of the camera-frame rotation angle (rad^2) of the left update ``exp([w]x) R``."""
    translation_cov: np.ndarray
    """(F, 3, 3) covariance of the translation (cm^2)."""
    rms: np.ndarray
    """(F,) root mean square of the whitened residuals."""
    camera: Camera
    ok: np.ndarray
    """(F,) False for a face with no pose (its values are NaN)."""

    def poses(self) -> list[Pose | None]:
        """One :class:`Pose` per face, None where ``ok`` is False."""
        a, sd, ok = self.angles.tolist(), self.angles_sd.tolist(), self.ok.tolist()
        return [Pose(a[i][0], a[i][1], a[i][2], sd[i][0], sd[i][1], sd[i][2], self.rotation[i],
                     self.translation[i], float(self.rms[i]), self.camera) if ok[i] else None
                for i in range(len(a))]


class _Model:
    """Mean-face terms that do not depend on the image (computed once per mean face)."""

    def __init__(self, face: MeanFace):
        self.points = np.ascontiguousarray(face.points, dtype=np.float64)
        self.points_t = np.ascontiguousarray(self.points.T)  # (3, N)
        self.homogeneous = homogeneous(self.points_t)  # (4, N) with a row of ones (pose_one)
        self.sigma2 = np.asarray(face.sigma, dtype=np.float64) ** 2
        self.n = len(self.points)
        self.extent = float(np.ptp(self.points[:, 0]))  # face width, cm
        # Weak-perspective start: weights 1 / sigma^2 so the silhouette jaw counts less, as in the solve.
        w = 1.0 / self.sigma2
        self.weights = w / w.sum()
        self.centre = self.weights @ self.points
        mc = self.points - self.centre
        # (3, N) map: image rows (centred, weighted) -> the two scaled rotation rows (weighted least squares).
        self.fit = np.linalg.solve(mc.T @ (mc * w[:, None]), (mc * w[:, None]).T)


_MODELS: dict[int, tuple[MeanFace, _Model]] = {}


def _model(face: MeanFace) -> _Model:
    hit = _MODELS.get(id(face))
    if hit is None or hit[0] is not face:
        if len(_MODELS) > 16:  # custom faces (tests): keep the cache small
            _MODELS.clear()
        hit = _MODELS[id(face)] = (face, _Model(face))  # the face is kept so its id is not reused
    return hit[1]


# Maps a rotation vector to its flattened cross-product matrix [w]x (one matmul for all faces).
_SKEW = np.zeros((3, 9))
_SKEW[2, 1], _SKEW[1, 2], _SKEW[0, 5], _SKEW[2, 3], _SKEW[1, 6], _SKEW[0, 7] = -1, 1, -1, 1, -1, 1
_SKEW_HALF = 0.5 * _SKEW


def exp_so3(w: np.ndarray) -> np.ndarray:
    """(F, 3) rotation vectors -> (F, 3, 3) rotation matrices (Rodrigues, vectorised)."""
    # 1e-200 under the root: sin(th) / th and 2 sin(th/2)^2 / th^2 stay exact (1 and 1/2) at th = 0.
    th = np.sqrt(np.einsum("ij,ij->i", w, w) + 1e-200)
    a = np.sin(th) / th
    h = np.sin(0.5 * th) / th
    k = (w @ _SKEW).reshape(-1, 3, 3)
    return np.eye(3) + a[:, None, None] * k + (2.0 * h * h)[:, None, None] * (k @ k)


def turn(w: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``rot`` (F, 3, 3) turned by the small camera-frame angles ``w`` (F, 3): about ``exp([w]x) rot``.

    Cayley's map, ``I + 2 ([c]x + [c]x^2) / (1 + |c|^2)`` with ``c = w / 2``: exactly orthonormal, and the
    angle it turns by is ``2 atan(|w| / 2)``, within 0.01 % of ``|w|`` for the steps and per-frame motions it
    is used for (under 0.1 rad), at about half the numpy calls of :func:`exp_so3`.
    """
    if len(w) == 1:  # one face (the common video case): the 3x3 in Python floats, 2 numpy calls fewer
        return rot + turn_matrix(*w[0].tolist()) @ rot
    k = (w @ _SKEW_HALF).reshape(-1, 3, 3)
    g = 2.0 / (1.0 + 0.25 * np.einsum("ij,ij->i", w, w))
    return rot + (g[:, None, None] * (k + k @ k)) @ rot


def turn_matrix(w0: float, w1: float, w2: float) -> np.ndarray:
    """(1, 3, 3) ``g ([c]x + [c]x^2)`` of :func:`turn` for one face, ``c = w / 2``; ``[c]x^2 = c c^T - |c|^2 I``."""
    c0, c1, c2 = 0.5 * w0, 0.5 * w1, 0.5 * w2
    cc = c0 * c0 + c1 * c1 + c2 * c2
    g = 2.0 / (1.0 + cc)
    return np.array([g * (c0 * c0 - cc), g * (c0 * c1 - c2), g * (c0 * c2 + c1),
                     g * (c1 * c0 + c2), g * (c1 * c1 - cc), g * (c1 * c2 - c0),
                     g * (c2 * c0 - c1), g * (c2 * c1 + c0), g * (c2 * c2 - cc)]).reshape(1, 3, 3)  # flat: cheaper


def log_so3(r: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotations -> (F, 3) rotation vectors (inverse of :func:`exp_so3` for angles below pi)."""
    c = np.clip((np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    th = np.arccos(c)
    v = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], 1)
    s = np.sin(th)
    f = np.where(s > 1e-8, th / np.where(s > 1e-8, 2.0 * s, 1.0), 0.5)
    return v * f[:, None]


def _check(points: np.ndarray, cov: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (n, 2):
        raise PoseError(f"landmarks must be (faces, {n}, 2) for this mean face, got shape {pts.shape}")
    if not math.isfinite(pts.sum()):  # one sum: NaN or infinity anywhere makes it non-finite
        raise PoseError("landmarks contain NaN or infinite values")
    if cov is None:
        return pts, None
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (len(pts), n, 2, 2):
        raise PoseError(f"covariance must be ({len(pts)}, {n}, 2, 2), got shape {c.shape}")
    if not math.isfinite(c.sum()):
        raise PoseError("covariance contains NaN or infinite values")
    return pts, c


@lru_cache(maxsize=16)
def _normaliser(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pixels -> normalised image coordinates: subtract the first, multiply by the second ((2, 1) each)."""
    return np.array([[cam.cx], [cam.cy]]), np.array([[1.0 / cam.fx], [1.0 / cam.fy]])


def _weak_perspective(xn: np.ndarray, m: _Model) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form start for every face: scaled-orthographic fit of the mean face to normalised points."""
    centre = xn @ m.weights  # (F, 2)
    a = (xn - centre[:, :, None]) @ m.fit.T  # (F, 2, 3): scaled rotation rows
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    rows = u @ vt  # nearest pair of orthonormal rows
    rot = np.empty((len(xn), 3, 3))
    rot[:, :2] = rows
    a0, a1 = rows[:, 0], rows[:, 1]  # third row: their cross product (np.cross is slow on small arrays)
    rot[:, 2] = a0[:, [1, 2, 0]] * a1[:, [2, 0, 1]] - a0[:, [2, 0, 1]] * a1[:, [1, 2, 0]]
    depth = 2.0 / np.maximum(s.sum(1), 1e-12)  # distance of the face's centre (1 / scale)
    rc = rot @ m.centre
    t = np.empty((len(xn), 3))
    t[:, :2] = centre * depth[:, None] - rc[:, :2]
    t[:, 2] = depth - rc[:, 2]
    return rot, t


def _init_arrays(init: Sequence[Pose | None] | tuple[np.ndarray, np.ndarray] | None,
                 f: int) -> tuple[np.ndarray, np.ndarray]:
    """Starting rotations (F, 3, 3) and translations (F, 3); NaN rows where a face has no start."""
    if isinstance(init, tuple):
        r0, t0 = (np.asarray(a, dtype=np.float64) for a in init)
        if r0.shape != (f, 3, 3) or t0.shape != (f, 3):
            raise PoseError(f"init arrays must be ({f}, 3, 3) and ({f}, 3), got {r0.shape} and {t0.shape}")
        return r0, t0
    rot, t = np.full((f, 3, 3), np.nan), np.full((f, 3), np.nan)
    if init is not None:
        if len(init) != f:
            raise PoseError(f"init must have one entry (Pose or None) per face: {len(init)} for {f} faces")
        for i, p in enumerate(init):
            if p is not None:
                rot[i], t[i] = p.rotation, p.translation
    return rot, t


def _solve(xn: np.ndarray, cov: np.ndarray | None, cam: Camera, m: _Model, rot: np.ndarray, t: np.ndarray,
           limit: int, tol: float, huber: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                            np.ndarray | None, np.ndarray, float]:
    """Gauss-Newton from (rot, t): returns rot, t, H^-1, chi2, each face's last step size (None when all
    converged), the sum of its rotation steps (to first order the rotation from the start, camera frame) and
    the largest last step."""
    # Whitening once, at the starting scale (1 / distance in normalised units per cm), as solve_pose does.
    white = whitening(cov, cam, m.sigma2[None, :] / (t[:, 2:3] ** 2))
    moved = np.zeros((len(t), 3))
    for _ in range(max(1, limit)):
        step, hinv, chi2 = gauss_newton_step(xn, rot, t, m.points_t, white, huber)
        w = step[:, :3]
        rot = turn(w, rot)
        t = t + step[:, 3:]
        moved += w
        # Gauss-Newton converges about quadratically: after a rotation step of s rad about 2 s^2 rad is left
        # (0.02 deg after a 0.86 deg step), so a warm start from the previous frame mostly takes one step. The
        # translation converges with the rotation (the image positions tie them), the scale in one step.
        ws = w.ravel().tolist()  # Python floats: cheaper than two numpy reductions for a frame's few faces
        big_max = max(map(abs, ws)) if math.isfinite(sum(ws)) else math.nan  # NaN: not converged
        if big_max <= tol:
            break
    big = None if big_max <= tol else np.abs(w).max(1)  # each face's last step, for the caller's redo
    return rot, t, hinv, chi2, big, moved, big_max


class PoseCore(NamedTuple):
    """What :func:`solve_core` returns: the solved poses of F faces without the Euler angles."""

    rotation: np.ndarray
    """(F, 3, 3)"""
    translation: np.ndarray
    """(F, 3)"""
    rotation_cov: np.ndarray
    """(F, 3, 3) camera-frame rotation covariance, rad^2."""
    translation_cov: np.ndarray
    """(F, 3, 3) cm^2."""
    rms: np.ndarray
    """(F,)"""
    ok: np.ndarray
    """(F,) False where a face has no pose (NaN values)."""
    normalised: np.ndarray
    """(F, 2, N) the landmarks in normalised image coordinates (what :func:`.openness.openness_arrays` takes)."""
    moved: np.ndarray
    """(F, 3) camera-frame rotation from the start to the result (first order; NaN for a face started cold)."""
    variances: np.ndarray
    """(F, 6) the diagonals of ``rotation_cov`` and ``translation_cov``."""


def solve_core(points: np.ndarray, covariance: np.ndarray | None, camera: Camera,
               init: Sequence[Pose | None] | tuple[np.ndarray, np.ndarray] | None = None,
               face: MeanFace | None = None, max_iterations: int | None = None, tol: float = 0.015,
               huber: float = 3.0) -> PoseCore:
    """:func:`solve_pose_arrays` without the Euler angles (for callers that smooth the pose first)."""
    m = _model(face if face is not None else mean_face(np.shape(points)[-2] if np.ndim(points) >= 2 else 68))
    pts, cov = _check(points, covariance, m.n)
    offset, scale = _normaliser(camera)
    xn = (pts.transpose(0, 2, 1) - offset) * scale
    rot, t = _init_arrays(init, len(pts))
    if len(pts) == 1:
        return _core_one(xn, cov, camera, m, rot, t, max_iterations, tol, huber)
    # Faces with no start (NaN compares False); None when every face has one (no mask to apply).
    cold = None if all(z > 0 for z in t[:, 2].tolist()) else ~(t[:, 2] > 0)
    if cold is not None:
        rot, t = rot.copy(), t.copy()  # the caller's arrays stay as they are
        rot[cold], t[cold] = _weak_perspective(xn[cold], m)
    limit = 6 if max_iterations is None else max_iterations
    rot, t, hinv, chi2, big, moved, big_max = _solve(xn, cov, camera, m, rot, t, limit, tol, huber)
    if cold is not None:
        moved[cold] = np.nan
    redo = None
    if max_iterations is None and big is not None and big_max > tol:
        redo = big > tol if cold is None else (big > tol) & ~cold
    if redo is not None and redo.any():  # a warm start far from this frame's pose (a jump, another face): redo
        sub = None if cov is None else cov[redo]
        r0, t0 = _weak_perspective(xn[redo], m)
        rot[redo], t[redo], hinv[redo], chi2[redo], _, _, _ = _solve(xn[redo], sub, camera, m, r0, t0, 6, tol, huber)
        moved[redo] = np.nan
    # Every point in front of the camera (False if NaN), and the face at least a pixel wide (points that all
    # but coincide put it at any distance).
    ok = ((rot[:, 2] @ m.points_t).min(1) + t[:, 2] > 0) & (t[:, 2] < m.extent * max(camera.fx, camera.fy))
    # The reduced chi-square scales the covariance up when the fit is worse than the covariances say.
    cov = hinv * np.maximum(1.0, chi2 / max(1, 2 * m.n - 6))[:, None, None]
    if not ok.all():
        for a in (rot, t, cov, chi2):
            a[~ok] = np.nan
    return PoseCore(rot, t, cov[:, :3, :3], cov[:, 3:, 3:], np.sqrt(np.maximum(chi2, 0.0) / (2 * m.n)), ok, xn,
                    moved, np.diagonal(cov, 0, 1, 2))


def _core_one(xn: np.ndarray, cov: np.ndarray | None, cam: Camera, m: _Model, rot: np.ndarray, t: np.ndarray,
              max_iterations: int | None, tol: float, huber: float) -> PoseCore:
    """:func:`solve_core` for one face through :func:`.pose_one.solve_one`: the same start, steps, redo and
    results (to about 1e-12), about half the numpy calls."""
    cold = not t[0, 2] > 0
    if cold:
        rot, t = _weak_perspective(xn, m)
    c = None if cov is None else cov[0]
    args = (xn[0], c, cam, m.homogeneous, m.sigma2)
    r, tt, hinv, chi2, moved, big = solve_one(*args, rot[0].ravel().tolist(), t[0].tolist(),
                                              6 if max_iterations is None else max_iterations, tol, huber)
    if max_iterations is None and not cold and big > tol:  # a warm start far from this frame's pose: redo
        rot, t = _weak_perspective(xn, m)
        r, tt, hinv, chi2, _, _ = solve_one(*args, rot[0].ravel().tolist(), t[0].tolist(), 6, tol, huber)
        cold = True
    if cold:
        moved = [math.nan] * 3
    ok = float((np.array(r[6:]) @ m.points_t).min()) + tt[2] > 0 and tt[2] < m.extent * max(cam.fx, cam.fy)
    if not ok:
        r, tt, chi2 = [math.nan] * 9, [math.nan] * 3, math.nan
    q = chi2 / max(1, 2 * m.n - 6)
    cov6 = (hinv * (q if not q <= 1.0 else 1.0) if ok else np.full((6, 6), math.nan))[None]
    rms = math.sqrt(chi2 / (2 * m.n)) if chi2 > 0.0 else (0.0 if chi2 == chi2 else math.nan)
    return PoseCore(np.array(r).reshape(1, 3, 3), np.array([tt]), cov6[:, :3, :3], cov6[:, 3:, 3:], np.array([rms]),
                    np.array([ok]), xn, np.array([moved]), np.diagonal(cov6, 0, 1, 2))


def solve_pose_arrays(points: np.ndarray, covariance: np.ndarray | None = None, *, camera: Camera,
                      init: Sequence[Pose | None] | tuple[np.ndarray, np.ndarray] | None = None,
                      face: MeanFace | None = None, max_iterations: int | None = None, tol: float = 0.015,
                      huber: float = 3.0) -> PoseArrays:
    """Head poses of F faces of one frame: ``points`` (F, N, 2) pixels, ``covariance`` (F, N, 2, 2) px^2 (the
    calibrated ``Face.covariance``; None = 1 px^2 isotropic), one ``camera`` for the frame.

    ``init``: the previous poses of the same faces, a sequence with None for a face with none, or arrays
    ``(rotation (F, 3, 3), translation (F, 3))`` with NaN rows for none. A face without one starts from a
    weak-perspective fit. Steps go on until every face's last rotation step is below ``tol`` rad, at most
    ``max_iterations`` (6): from the previous frame's pose one step is enough at normal head speeds, a cold
    start takes about 3. With the default, a warm-started face that has not converged by then (a wrong start)
    is solved again from the weak-perspective fit. A face with no pose (non-finite result, the face behind
    the camera) has ``ok`` False and NaN values.
    """
    c = solve_core(points, covariance, camera, init, face, max_iterations, tol, huber)
    angles, sd = pose_angles(c.rotation, c.translation, c.rotation_cov)
    return PoseArrays(c.rotation, c.translation, angles, sd, c.rotation_cov, c.translation_cov, c.rms, camera, c.ok)


def solve_poses(points: np.ndarray, covariance: np.ndarray | None = None, *, camera: Camera,
                init: Sequence[Pose | None] | None = None, face: MeanFace | None = None,
                max_iterations: int | None = None, huber: float = 3.0) -> list[Pose | None]:
    """:func:`solve_pose_arrays` returning one :class:`~.pose.Pose` per face, None for a face with no pose."""
    return solve_pose_arrays(points, covariance, camera=camera, init=init, face=face,
                             max_iterations=max_iterations, huber=huber).poses()
