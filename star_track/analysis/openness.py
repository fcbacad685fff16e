"""Eye and mouth openness, normalised for head pose.

An eye that turns away is not closing: the lid gap shrinks in the image when the head pitches, and the eye's
width when it yaws, so neither a raw lid distance nor the eye aspect ratio (EAR) is pose-free. Here each gap is
measured in the face's own frame: the image gap vector between an upper and a lower lid point is projected on
the image, at that pair's place and for this head pose, of the direction in which the pair opens on the mean
face (mostly down, a little in depth), and divided by that direction's length in pixels per cm, which gives the
gap in cm on the face. The mean face itself so reads the same at every pose, not only frontal. Eye openness is
the gap over the mean face's (an average open eye): about 1 for an open eye (1.1-1.4 on labelled real eyes),
0 for a closed one. Mouth openness is the inner-lip gap (cm) over the mean face's mouth width (outer corners):
0 closed, about 0.1 for the mean face, 0.5 and more wide open.

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
# The 98-point lids sit nearer the eye corners than the 300W ones, on real eyes and on the mean face unequally:
# this scale makes a 98-point model read the same eye openness as a 68-point one. Median ratio of the two on
# the shared WFLW training labels (every 10th face, the 68 points from WFLW's 98 -> 68 reduction): 1.20, spread
# 0.03 (tests/test_analysis_openness_blinks.py checks it).
_EYE_SCALE = {98: 1.20}


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
    """Per-layout constants: the lid / lip point pairs and their geometry on the mean face."""

    def __init__(self, face: MeanFace):
        n = len(face.points)
        if n not in _PAIRS:
            raise PoseError(f"openness needs a 68- or 98-point layout, got {n} points")
        groups = _PAIRS[n]
        pairs = [(k, u, lo) for k, name in enumerate(("left_eye", "right_eye", "mouth")) for u, lo in groups[name]]
        self.part = np.array([k for k, _, _ in pairs])
        self.all_upper = np.array([u for _, u, _ in pairs])
        self.all_lower = np.array([lo for _, _, lo in pairs])
        pts = face.points
        gap = pts[self.all_lower] - pts[self.all_upper]  # (pairs, 3) upper -> lower on the mean face, cm
        length = np.linalg.norm(gap, axis=1)
        self.centre = (pts[self.all_lower] + pts[self.all_upper]) / 2  # (pairs, 3)
        self.direction = gap / length[:, None]  # each pair's opening direction on the face
        # (3, pairs) averaging matrix; each part's norm: its mean-face lid gap (eyes), its mouth width (mouth).
        self.average = np.stack([(self.part == k) / (self.part == k).sum() for k in range(3)])
        a, b = _MOUTH_CORNERS[n]
        eyes = (self.average @ length)[:2] * _EYE_SCALE.get(n, 1.0)
        self.norm = np.r_[eyes, np.linalg.norm(pts[a] - pts[b])]
        # Fused forms for openness_arrays (fewer numpy calls): centres and directions turned in one product,
        # and the (N, pairs) map from the points to each pair's upper -> lower difference.
        self.centre_direction = np.concatenate([self.centre, self.direction])
        self.difference = np.zeros((n, len(pairs)))
        self.difference[self.all_lower, np.arange(len(pairs))] = 1.0
        self.difference[self.all_upper, np.arange(len(pairs))] = -1.0
        self.centre_direction_t = np.ascontiguousarray(self.centre_direction.T)  # (3, 2 pairs)
        self.norm_list = self.norm.tolist()


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
    cv = prep.centre_direction @ rotation.transpose(0, 2, 1)
    k = len(prep.centre)
    xc = cv[:, :k] + translation[:, None, :]  # (F, pairs, 3) camera frame
    v = cv[:, k:]  # (F, pairs, 3) each pair's opening direction, camera frame
    iz = 1.0 / xc[..., 2]
    # Image of a 1 cm step along that direction at the pair's centre (the projection Jacobian times v).
    w = (v[..., :2] - xc[..., :2] * (iz * v[..., 2])[..., None]) * iz[..., None]  # (F, pairs, 2)
    w = w / (w * w).sum(2, keepdims=True)  # so that d . w is the gap in cm along the direction
    d = points_t @ prep.difference  # (F, 2, pairs) upper -> lower (exact: two non-zero terms per column)
    gap = (d * w.transpose(0, 2, 1)).sum(1)  # (F, pairs) in cm
    return np.maximum(gap @ prep.average.T, 0.0) / prep.norm


def openness_one(points_t: np.ndarray, rotation: np.ndarray, translation: np.ndarray, face: MeanFace) -> list:
    """:func:`openness_arrays` of one face ((2, N), (3, 3), (3,)) as 3 floats, in 2-D arrays and fewer calls."""
    prep = _prepared(face)
    cv = rotation @ prep.centre_direction_t  # (3, 2 pairs): centres, then directions, camera axes
    k = len(prep.centre)
    xc = cv[:, :k] + translation[:, None]
    v = cv[:, k:]
    iz = 1.0 / xc[2]
    wd = np.empty((2, 2, k))  # w (the image of a 1 cm step along the direction), d (the image gap)
    np.multiply(v[:2] - xc[:2] * (iz * v[2]), iz, out=wd[0])
    np.matmul(points_t, prep.difference, out=wd[1])
    p = wd * wd[0]
    s = p[:, 0] + p[:, 1]  # |w|^2, d . w
    gaps = ((s[1] / s[0]) @ prep.average.T).tolist()
    return [max(g, 0.0) / n for g, n in zip(gaps, prep.norm_list)]  # max keeps NaN, as np.maximum does


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
