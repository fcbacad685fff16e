"""Drawing: landmarks, facial-part polylines, uncertainty ellipses, box + track id, FPS text (BGR, in place)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .model.schemes import LandmarkScheme

_COLORS = [(0, 255, 0), (255, 128, 0), (0, 128, 255), (255, 0, 255), (0, 255, 255), (255, 255, 0)]


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable BGR colour per track id."""
    return _COLORS[track_id % len(_COLORS)]


def _pt(p: np.ndarray, shift: int) -> tuple[int, int]:
    return int(round(float(p[0]) * (1 << shift))), int(round(float(p[1]) * (1 << shift)))


def draw_landmarks(img: np.ndarray, points: np.ndarray, scheme: LandmarkScheme | None = None,
                   color: tuple[int, int, int] = (0, 255, 0), radius: int = 0, edges: bool = True) -> np.ndarray:
    """Points (and the scheme's part polylines) on ``img``. ``radius`` 0 scales with the face size."""
    pts = np.asarray(points, np.float64)
    if not np.isfinite(pts).all() or len(pts) == 0:
        return img
    shift = 4
    size = float(np.ptp(pts[:, 0]) + np.ptp(pts[:, 1])) / 2
    r = radius or max(1, int(round(size / 120)))
    if edges and scheme is not None and scheme.num_points == len(pts):
        for e in scheme.edges:
            poly = np.round(pts[list(e.points)] * (1 << shift)).astype(np.int32)
            cv2.polylines(img, [poly], e.closed, color, 1, cv2.LINE_AA, shift)
    for p in pts:
        cv2.circle(img, _pt(p, shift), r << shift, color, -1, cv2.LINE_AA, shift)
    return img


def draw_ellipses(img: np.ndarray, points: np.ndarray, cov: np.ndarray, color: tuple[int, int, int] = (0, 200, 255),
                  n_std: float = 2.0, max_axis: float | None = None) -> np.ndarray:
    """``n_std``-sigma uncertainty ellipse of each landmark from its (N, 2, 2) covariance in pixels²."""
    pts = np.asarray(points, np.float64)
    lam, vec = np.linalg.eigh(np.asarray(cov, np.float64))
    lam = np.clip(lam, 0, None)
    limit = max_axis or float(max(img.shape[:2]))
    for p, l, v in zip(pts, lam, vec):
        if not (np.isfinite(p).all() and np.isfinite(l).all()):
            continue
        axes = (min(limit, n_std * np.sqrt(l[1])), min(limit, n_std * np.sqrt(l[0])))  # major, minor
        angle = float(np.degrees(np.arctan2(v[1, 1], v[0, 1])))
        cv2.ellipse(img, ((float(p[0]), float(p[1])), (2 * axes[0], 2 * axes[1]), angle), color, 1, cv2.LINE_AA)
    return img


def draw_box(img: np.ndarray, box: np.ndarray, label: str | None = None,
             color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Rectangle (x1, y1, x2, y2) with an optional label above it."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, 1, cv2.LINE_AA)
    if label:
        cv2.putText(img, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return img


_AXES = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
_AXIS_COLORS = ((0, 0, 255), (0, 200, 0), (255, 80, 0))  # x red, y green, z blue (BGR)


def draw_pose_axes(img: np.ndarray, pose, length_cm: float = 8.0, origin: np.ndarray | None = None) -> np.ndarray:
    """A head pose's axes (x red: the subject's left, y green: down, z blue: out of the face toward the camera),
    ``length_cm`` long from ``origin`` (mean-face cm; default the 68-point mean face's nose tip) through the
    pose's camera."""
    from .analysis.mean_face import mean_face
    from .analysis.pose import project

    cam = getattr(pose, "camera", None)
    if pose is None or cam is None:
        return img
    o = mean_face(68).points[30] if origin is None else np.asarray(origin, np.float64)
    pts = o + _AXES * length_cm * np.array([1.0, 1.0, -1.0])  # the mean face's z points into the head
    px = project(pts, np.asarray(pose.rotation, np.float64), np.asarray(pose.translation, np.float64), cam)
    if not np.isfinite(px).all():
        return img
    for k, color in enumerate(_AXIS_COLORS, 1):
        cv2.arrowedLine(img, _pt(px[0], 4), _pt(px[k], 4), color, 2, cv2.LINE_AA, 4, 0.15)
    return img


def draw_fps(img: np.ndarray, fps: float) -> np.ndarray:
    """``NN.N fps`` in the top-left corner."""
    text = f"{fps:.1f} fps"
    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def draw_faces(img: np.ndarray, faces: Sequence, scheme: LandmarkScheme | None = None, ellipses: bool = False,
               boxes: bool = True, fps: float | None = None, pose: bool = False) -> np.ndarray:
    """Draw every :class:`star_track.tracking.face.Face` (smoothed landmarks) on ``img`` in place and return it;
    ``pose``: also each face's head axes (:func:`draw_pose_axes`)."""
    for f in faces:
        color = track_color(f.track_id)
        if ellipses:
            draw_ellipses(img, f.raw_landmarks, f.covariance)
        draw_landmarks(img, f.landmarks, scheme, color)
        if boxes:
            draw_box(img, f.box, f"#{f.track_id} {f.score:.2f}", color)
        if pose:
            draw_pose_axes(img, getattr(f, "pose", None))
    if fps is not None:
        draw_fps(img, fps)
    return img
