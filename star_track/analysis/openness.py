"""Eye and mouth openness, normalised for head pose.

An eye that turns away is not closing: the lid gap shrinks in the image when the head pitches, and the eye's
width when it yaws, so neither a raw lid distance nor the eye aspect ratio (EAR) is pose-free. Here each gap is
measured in the face's own frame: the image gap vector between an upper and a lower lid point is projected on
the image of the face's vertical axis at the eye (known from the head pose) and divided by that axis' length in
pixels per cm, which gives the gap in cm on the face. Eye openness is that gap over the same gap on the mean
face (an average open eye): about 1 for an open eye, 0 for a closed one, > 1 for a wide-open one. Mouth
openness is the inner-lip gap (cm) over the mean face's mouth width (outer corners): 0 closed, about 0.1 for
the mean face, 0.5 and more wide open.

``left`` and ``right`` are the subject's own: the left eye is 300W points 42-47 (WFLW 68-75), on the image
right of a face that looks at the camera.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mean_face import MeanFace, mean_face
from .pose import Pose, PoseError

# (upper, lower) lid / lip point pairs per layout; the eye's and mouth's centre points.
_PAIRS: dict[int, dict[str, tuple[tuple[int, int], ...]]] = {
    68: {"right_eye": ((37, 41), (38, 40)), "left_eye": ((43, 47), (44, 46)),
         "mouth": ((61, 67), (62, 66), (63, 65))},
    98: {"right_eye": ((61, 67), (62, 66), (63, 65)), "left_eye": ((69, 75), (70, 74), (71, 73)),
         "mouth": ((89, 95), (90, 94), (91, 93))},
}
_MOUTH_CORNERS = {68: (48, 54), 98: (76, 82)}


@dataclass(frozen=True)
class Openness:
    """Pose-normalised openness of one face."""

    left_eye: float
    """Subject's left eye: lid gap / mean face's lid gap (1 about open, 0 closed)."""
    right_eye: float
    """Subject's right eye, as ``left_eye``."""
    mouth: float
    """Inner-lip gap / mean face's mouth width (0 closed)."""

    @property
    def eyes(self) -> float:
        """Mean of both eyes (what blink detection follows)."""
        return 0.5 * (self.left_eye + self.right_eye)


class _Prepared:
    """Per-layout constants: point indices and the mean face's own gaps."""

    def __init__(self, face: MeanFace):
        n = len(face.points)
        if n not in _PAIRS:
            raise PoseError(f"openness needs a 68- or 98-point layout, got {n} points")
        groups = _PAIRS[n]
        self.names = ("left_eye", "right_eye", "mouth")
        self.upper = [np.array([a for a, _ in groups[k]]) for k in self.names]
        self.lower = [np.array([b for _, b in groups[k]]) for k in self.names]
        pts = face.points
        # Centre of each part on the mean face: where the face's vertical axis is imaged.
        self.centre = np.stack([pts[np.r_[u, lo]].mean(0) for u, lo in zip(self.upper, self.lower)])
        # Mean-face gaps in cm along the face's vertical (y, down) axis.
        eye_gap = [float((pts[lo, 1] - pts[u, 1]).mean()) for u, lo in zip(self.upper[:2], self.lower[:2])]
        a, b = _MOUTH_CORNERS[n]
        self.norm = np.array(eye_gap + [float(np.linalg.norm(pts[a] - pts[b]))])
        # All pairs at once: their upper / lower indices, their part, and a (3, pairs) averaging matrix.
        self.all_upper = np.concatenate(self.upper)
        self.all_lower = np.concatenate(self.lower)
        self.part = np.concatenate([np.full(len(u), k) for k, u in enumerate(self.upper)])
        self.average = np.stack([(self.part == k) / (self.part == k).sum() for k in range(3)])


_CACHE: dict[int, tuple[MeanFace, _Prepared]] = {}


def _prepared(face: MeanFace) -> _Prepared:
    hit = _CACHE.get(id(face))
    if hit is None or hit[0] is not face:
        if len(_CACHE) > 16:
            _CACHE.clear()
        hit = _CACHE[id(face)] = (face, _Prepared(face))  # the face is kept so its id is not reused
    return hit[1]


def openness_arrays(points_t: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                    face: MeanFace) -> np.ndarray:
    """(F, 3) left eye, right eye, mouth openness of F faces at once.

    ``points_t``: (F, 2, N) landmarks in normalised image coordinates ((u - cx) / fx, (v - cy) / fy), i.e.
    transposed; ``rotation`` (F, 3, 3) / ``translation`` (F, 3) their poses. Normalised coordinates leave the
    focal length out: the gap and the face's vertical axis are imaged with the same scale.
    """
    prep = _prepared(face)
    xc = prep.centre @ rotation.transpose(0, 2, 1) + translation[:, None, :]  # (F, 3 parts, 3) camera frame
    v = rotation[:, None, :, 1]  # the face's vertical axis (down) in the camera frame, (F, 1, 3)
    iz = 1.0 / xc[..., 2]
    # Image of a 1 cm step along the face's vertical axis at each part's centre (projection Jacobian times v).
    w = (v[..., :2] - xc[..., :2] * (iz * v[..., 2])[..., None]) * iz[..., None]  # (F, 3, 2)
    w = w / (w * w).sum(2, keepdims=True)  # so that d . w is the gap in cm on the face
    d = points_t[:, :, prep.all_lower] - points_t[:, :, prep.all_upper]  # (F, 2, pairs) upper -> lower
    gap = (d * w[:, prep.part].transpose(0, 2, 1)).sum(1)  # (F, pairs) in cm
    return np.maximum(gap @ prep.average.T, 0.0) / prep.norm


def face_openness(landmarks: np.ndarray, pose: Pose, face: MeanFace | None = None) -> Openness:
    """Eye and mouth openness of one face from its (N, 2) landmarks and its :func:`~.pose.solve_pose` pose."""
    pts = np.asarray(landmarks, dtype=np.float64)
    face = face if face is not None else mean_face(len(pts))
    if pts.shape != (len(face.points), 2):
        raise PoseError(f"landmarks must be ({len(face.points)}, 2), got shape {pts.shape}")
    cam = pose.camera
    if cam is None:
        raise PoseError("the pose carries no camera (use a Pose from solve_pose)")
    xn = ((pts - [cam.cx, cam.cy]) / [cam.fx, cam.fy]).T[None]
    left, right, mouth = openness_arrays(xn, pose.rotation[None], np.asarray(pose.translation)[None], face)[0].tolist()
    return Openness(left, right, mouth)
