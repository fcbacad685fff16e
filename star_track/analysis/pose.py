"""Head pose from 2D landmarks: uncertainty-weighted PnP against a 3D mean face.

Angle convention (300W-LP / AFLW2000 ``Pose_Para`` as 3DDFA reads it, degrees, a frontal face is (0, 0, 0)):

* **yaw > 0**: the head turns toward the image left (the subject turns to their own right; the nose moves left);
* **pitch > 0**: the head tilts up (the subject looks up; the nose moves up);
* **roll > 0**: the head leans so the face turns clockwise in the image (the top of the head moves right).

In 3DDFA's terms the object-to-camera rotation in its y-up frames is ``R = (Rz(roll) Ry(yaw) Rx(pitch))^T``
with right-handed axis rotations, which is what the Matlab ``RotationMatrix(pitch, yaw, roll)`` of 300W-LP
builds. The angles are measured relative to the line of sight to the face (the rotation that turns the optical
axis onto the face is removed), as a weak-perspective fit such as the benchmarks' labels sees the face; with the
face at the image centre this is the same as relative to the camera axes.

:attr:`Pose.rotation` / :attr:`Pose.translation` are OpenCV's ``solvePnP`` convention: ``X_cam = R X + t``, the
camera frame x right, y down, z forward, the object frame that of :class:`~star_track.analysis.mean_face.MeanFace`
(cm). :attr:`Pose.matrix` is the same transform in MediaPipe's facial-transformation-matrix convention: it maps
MediaPipe canonical-model coordinates (cm, y up, z out of the face) into a camera frame with y up and the camera
looking down -z (OpenGL). The translation is in cm only as far as the face has the mean face's size.

Solver: Gauss-Newton on the 6 pose parameters minimising sum_i r_i^T S_i^-1 r_i, where r_i is landmark i's
reprojection error and S_i = C_i + (s sigma_i)^2 I: C_i the landmark's calibrated 2x2 covariance (a jaw point,
uncertain along the jaw, votes mostly along its normal), sigma_i the mean face's model uncertainty in cm and s the
current scale in px per cm. A Huber weight on each whitened residual keeps one bad point from pulling the pose.
It starts from OpenCV's SQPnP (unweighted) or from a given previous pose (video), and uses OpenCV's analytic
projection Jacobian. The angle standard deviations
come from (J^T S^-1 J)^-1, scaled up by the reduced chi-square when the fit is worse than the covariances say.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from star_track.errors import StarTrackError

from .mean_face import MeanFace, mean_face

_F = np.diag([1.0, -1.0, -1.0])  # OpenCV <-> y-up/z-toward-viewer frames (its own inverse)
_DEG = 180.0 / math.pi


class PoseError(StarTrackError, ValueError):
    """Landmarks, covariances or camera unusable for a pose (wrong shape, non-finite, too few points)."""


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels (no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def default(cls, width: float, height: float, focal: float | None = None) -> Camera:
        """Focal length = ``focal`` or the frame width, principal point at the frame centre."""
        f = float(width if focal is None else focal)
        if not (f > 0 and width > 0 and height > 0):
            raise PoseError(f"camera needs a positive frame size and focal length, got {width}x{height}, f={f}")
        return cls(f, f, width / 2.0, height / 2.0)


@dataclass
class Pose:
    """A head pose: benchmark Euler angles with their standard deviations, and the rigid transform."""

    yaw: float
    pitch: float
    roll: float
    """Degrees, 300W-LP / AFLW2000 ``Pose_Para`` convention as 3DDFA defines it, frontal = (0, 0, 0): yaw > 0 the
    subject turns to their own right (nose toward the image left), pitch > 0 looks up, roll > 0 the face turns
    clockwise in the image (top of the head toward the image right); relative to the line of sight."""
    yaw_sd: float
    pitch_sd: float
    roll_sd: float
    """Standard deviation of each angle in degrees."""
    rotation: np.ndarray
    """(3, 3) object-to-camera rotation, OpenCV convention (``X_cam = R X + t``)."""
    translation: np.ndarray
    """(3,) in cm (mean-face units), OpenCV camera frame."""
    rms: float = float("nan")
    """Root mean square of the whitened residuals (about 1 when landmarks and mean face fit as expected)."""
    camera: Camera | None = field(default=None, repr=False)
    rvec: np.ndarray | None = field(default=None, repr=False)
    """(3,) the rotation as an OpenCV rotation vector (what a warm start reuses)."""

    @property
    def angles(self) -> np.ndarray:
        """(3,) yaw, pitch, roll in degrees."""
        return np.array([self.yaw, self.pitch, self.roll])

    @property
    def angles_sd(self) -> np.ndarray:
        """(3,) standard deviations of yaw, pitch, roll in degrees."""
        return np.array([self.yaw_sd, self.pitch_sd, self.roll_sd])

    @property
    def matrix(self) -> np.ndarray:
        """4x4 transform like MediaPipe's facial transformation matrix (canonical model cm -> OpenGL camera)."""
        m = np.eye(4)
        m[:3, :3] = _F @ self.rotation @ _F
        m[:3, 3] = _F @ self.translation
        return m


# --- rotations ----------------------------------------------------------------------------------------------

def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """OpenCV object-to-camera rotation of a face at (yaw, pitch, roll) degrees (benchmark convention)."""
    m = _rz(roll / _DEG) @ _ry(yaw / _DEG) @ _rx(pitch / _DEG)
    return _F @ m.T @ _F


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees of an OpenCV object-to-camera rotation (inverse of :func:`rotation_from_euler`)."""
    m = (_F @ rotation @ _F).T
    r = m.tolist()
    pitch = math.atan2(r[2][1], r[2][2])
    yaw = math.atan2(-r[2][0], math.hypot(r[0][0], r[1][0]))
    roll = math.atan2(r[1][0], r[0][0])
    return yaw * _DEG, pitch * _DEG, roll * _DEG


def _view_rotation(t: np.ndarray) -> np.ndarray:
    """Rotation turning the optical axis (0, 0, 1) onto the direction of ``t``."""
    d = t / np.linalg.norm(t)
    axis = np.array([-d[1], d[0], 0.0])  # z x d
    s = math.hypot(d[0], d[1])
    if s < 1e-12:
        return np.eye(3)
    return cv2.Rodrigues(axis * (math.atan2(s, d[2]) / s))[0]


def project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: Camera) -> np.ndarray:
    """(N, 3) object points -> (N, 2) pixels through the pose and the pinhole camera."""
    xc = points @ rotation.T + translation
    return np.stack([camera.fx * xc[:, 0] / xc[:, 2] + camera.cx, camera.fy * xc[:, 1] / xc[:, 2] + camera.cy], 1)


# --- solver ----------------------------------------------------------------------------------------------------

def _initial_pose(pts: np.ndarray, model: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted start: OpenCV's SQPnP (globally optimal for the plain reprojection error, ~20 us)."""
    ok, rvec, tvec = cv2.solvePnP(model, pts, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok or not np.isfinite(tvec).all() or tvec[2, 0] <= 0:
        ok, rvec, tvec = cv2.solvePnP(model, pts, k, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok or tvec[2, 0] <= 0:
            raise PoseError("no pose fits these landmarks (degenerate or behind the camera)")
    return rvec.ravel(), tvec.ravel()


def _whitening(cov: np.ndarray | None, extra: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangular L_i with L^T L = (C_i + extra_i I)^-1, as its three entries (a, b, c)."""
    if cov is None:
        sxx = syy = extra
        sxy = np.zeros_like(extra)
    else:
        sxx, sxy, syy = cov[:, 0, 0] + extra, cov[:, 0, 1], cov[:, 1, 1] + extra
    det = sxx * syy - sxy * sxy
    p, q, r = syy / det, -sxy / det, sxx / det  # inverse covariance
    a = np.sqrt(p)
    return a, q / a, np.sqrt(r - q * q / p)


def _check(landmarks: np.ndarray, covariance: np.ndarray | None, n_model: int) -> tuple[np.ndarray, np.ndarray | None]:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape != (n_model, 2):
        raise PoseError(f"landmarks must be ({n_model}, 2) for this mean face, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise PoseError("landmarks contain NaN or infinite values")
    cov = None
    if covariance is not None:
        cov = np.asarray(covariance, dtype=np.float64)
        if cov.shape != (n_model, 2, 2):
            raise PoseError(f"covariance must be ({n_model}, 2, 2), got shape {cov.shape}")
        if not np.isfinite(cov).all():
            raise PoseError("covariance contains NaN or infinite values")
    return pts, cov


def solve_pose(landmarks: np.ndarray, covariance: np.ndarray | None = None, *,
               image_size: tuple[int, int] | None = None, camera: Camera | None = None,
               init: Pose | None = None, face: MeanFace | None = None, iterations: int = 3,
               huber: float = 3.0) -> Pose:
    """Head pose of one face from its (N, 2) landmarks in pixels (N = 68 or 98).

    The single-face reference solver (OpenCV SQPnP start and Jacobian). Video and the tracker use
    :func:`star_track.analysis.pose_batch.solve_poses` (every face of a frame in one vectorised solve, the same
    result within 0.02 degree) through :class:`star_track.analysis.analyzer.FrameAnalyzer`.

    ``covariance``: (N, 2, 2) calibrated landmark covariances in px^2 (``Face.covariance``); without it every
    point counts as 1 px^2 isotropic. ``camera`` overrides the default intrinsics built from
    ``image_size = (width, height)`` (focal = width, principal point at the centre); one of the two is needed.
    ``init``: a previous pose of the same face (video) to start from instead of the closed form.
    """
    face = face if face is not None else mean_face(len(landmarks))
    pts, cov = _check(landmarks, covariance, len(face.points))
    if camera is None:
        if image_size is None:
            raise PoseError("solve_pose needs image_size=(width, height) or camera=Camera(...)")
        camera = Camera.default(*image_size)
    model = face.points
    k = np.array([[camera.fx, 0.0, camera.cx], [0.0, camera.fy, camera.cy], [0.0, 0.0, 1.0]])
    if init is not None:
        rvec = init.rvec if init.rvec is not None else cv2.Rodrigues(init.rotation)[0].ravel()
        tvec = np.array(init.translation, dtype=np.float64)
    else:
        rvec, tvec = _initial_pose(pts, model, k)
    n = len(model)
    # Whitening once, at the starting scale (px per cm): the scale hardly changes over the few steps.
    s = camera.fx / max(tvec[2], 1e-6)
    whiten = _whitening(cov, face.sigma * face.sigma * (s * s))
    rvec, tvec, chi2, hinv = _gauss_newton(model, pts, k, whiten, rvec, tvec, iterations, huber)
    dof = max(1, 2 * n - 6)
    cov_r = hinv[:3, :3] * max(1.0, chi2 / dof)
    r = cv2.Rodrigues(rvec)[0]
    view = _view_rotation(tvec)
    rel = view.T @ r
    yaw, pitch, roll = euler_from_rotation(rel)
    sd = _angle_sd(rvec, rel, view, cov_r, yaw, roll)
    return Pose(yaw, pitch, roll, sd[0], sd[1], sd[2], r, tvec, math.sqrt(max(chi2, 0.0) / (2 * n)), camera, rvec)


def _gauss_newton(model: np.ndarray, pts: np.ndarray, k: np.ndarray, whiten: tuple, rvec: np.ndarray,
                  tvec: np.ndarray, iterations: int, huber: float) -> tuple:
    """Weighted Gauss-Newton steps of the reprojection error; returns (rvec, tvec, predicted chi2, H^-1)."""
    wa, wb, wc = whiten
    n = len(model)
    jw = np.empty((2 * n, 6))
    ew = np.empty(2 * n)
    chi2, hinv = 0.0, np.full((6, 6), np.inf)
    for _ in range(max(1, iterations)):
        proj, jac = cv2.projectPoints(model, rvec, tvec, k, None)
        res = proj.reshape(n, 2) - pts
        rx, ry = res[:, 0], res[:, 1]
        e1, e2 = wa * rx + wb * ry, wc * ry
        # Huber: points whose whitened error exceeds `huber` count as if their covariance were larger.
        sw = np.sqrt(np.minimum(1.0, huber / np.sqrt(e1 * e1 + e2 * e2 + 1e-24)))
        j = jac[:, :6].reshape(n, 2, 6)  # d(u, v)/d(rvec, tvec), OpenCV's analytic Jacobian
        ca, cb, cc = (wa * sw)[:, None], (wb * sw)[:, None], (wc * sw)[:, None]
        jw[:n] = ca * j[:, 0] + cb * j[:, 1]
        jw[n:] = cc * j[:, 1]
        ew[:n] = e1 * sw
        ew[n:] = e2 * sw
        h = jw.T @ jw
        g = jw.T @ ew
        try:
            hinv = np.linalg.inv(h)
        except np.linalg.LinAlgError:
            break
        step = -(hinv @ g)
        # Gauss-Newton's own prediction of the weighted squared error after the step.
        chi2 = float(ew @ ew + g @ step)
        rvec = rvec + step[:3]
        tvec = tvec + step[3:]
    return rvec, tvec, chi2, hinv


def _left_jacobian(phi: np.ndarray) -> np.ndarray:
    """SO(3) left Jacobian: d(rotation)/d(rotation vector) as a camera-frame angular increment."""
    x, y, z = phi.tolist()
    th = math.sqrt(x * x + y * y + z * z)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    if th < 1e-6:
        return np.eye(3) + 0.5 * k
    return np.eye(3) + ((1 - math.cos(th)) / th ** 2) * k + ((th - math.sin(th)) / th ** 3) * (k @ k)


def _angle_sd(rvec: np.ndarray, rel: np.ndarray, view: np.ndarray, cov_r: np.ndarray, yaw: float,
              roll: float) -> np.ndarray:
    """Angle sd by first-order propagation of the rotation-vector covariance ``cov_r``.

    With M = (F rel F)^T = Rz(roll) Ry(yaw) Rx(pitch), a camera-frame increment w of the rotation is a
    space-frame increment -M F view^T w of M; Euler rates follow from the Z-Y-X kinematics.
    """
    cy, sy = math.cos(yaw / _DEG), math.sin(yaw / _DEG)
    cr, sr = math.cos(roll / _DEG), math.sin(roll / _DEG)
    cy = cy if abs(cy) > 1e-6 else 1e-6
    einv = np.array([[-sr, cr, 0.0],  # d yaw
                     [cr / cy, sr / cy, 0.0],  # d pitch
                     [sy * cr / cy, sy * sr / cy, 1.0]])  # d roll
    m = (_F @ rel @ _F).T
    jac = einv @ (-(m @ _F) @ view.T) @ _left_jacobian(rvec) * _DEG
    var = np.einsum("ij,jk,ik->i", jac, cov_r, jac)
    return np.sqrt(np.maximum(var, 0.0))
