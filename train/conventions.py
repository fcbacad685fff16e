"""The two 68-point conventions: 300W's own labels vs the 68 points derived from WFLW's 98.

The bundled models learn **300W semantics** (the definition our 68-point output claims to follow). WFLW-derived
labels (true and teacher labels alike) are moved onto it by a per-point correction in the face's frame:

    correction_i = mean over 300W faces of (label - prediction)_i  -  mean over WFLW faces of (label - prediction)_i

with one model's GT-framed predictions on the *training* faces of both sources. The model's own bias (e.g. a
slight leftward shift of every point) is the same in both terms and cancels; what remains is where the two
label sets put the same point. The correction is made left/right symmetric (a convention has no side), and is
applied in the frame of the face it corrects: x along the outer-eye axis (36 -> 45), y perpendicular (down the
face), in units of the outer-eye distance.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from star_track.model.schemes import get_scheme

SCHEME = get_scheme("300w68")
GROUPS = {"jaw": range(17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
          "mouth": range(48, 68)}
"""The 68-point landmark groups every offset is reported for."""


def _frame(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit x axis, unit y axis and inter-ocular distance of (B, 68, 2) reference points."""
    a, b = SCHEME.outer_eye_corners
    axis = ref[:, b] - ref[:, a]
    iod = np.linalg.norm(axis, axis=-1)
    ux = axis / iod[:, None]
    uy = np.stack([-ux[:, 1], ux[:, 0]], -1)  # image y points down: (-ux_y, ux_x) is "down" for an upright face
    return ux, uy, iod


def to_face_frame(d: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pixel displacements (B, 68, 2) -> the frame of the faces ``ref`` (B, 68, 2), inter-ocular units."""
    d, ref = np.asarray(d, np.float64), np.asarray(ref, np.float64)
    ux, uy, iod = _frame(ref)
    return np.stack([(d * ux[:, None]).sum(-1), (d * uy[:, None]).sum(-1)], -1) / iod[:, None, None]


def from_face_frame(off: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_face_frame`: (B, 68, 2) or (68, 2) face-frame offsets -> pixel displacements."""
    ref = np.asarray(ref, np.float64)
    ux, uy, iod = _frame(ref)
    off = np.broadcast_to(np.asarray(off, np.float64), ref.shape)
    return (off[..., :1] * ux[:, None] + off[..., 1:] * uy[:, None]) * iod[:, None, None]


def face_frame_offsets(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(B, 68, 2) ``pred - gt`` in the true faces' frame, inter-ocular units."""
    return to_face_frame(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), gt)


def symmetrize(per_point: np.ndarray) -> np.ndarray:
    """Average each point's (68, 2) face-frame offset with its mirror partner's (x negated)."""
    mirrored = per_point[SCHEME.flip_permutation()] * np.array([-1.0, 1.0])
    return (per_point + mirrored) / 2


def fit_correction(pred_w300: np.ndarray, gt_w300: np.ndarray, pred_wflw: np.ndarray,
                   gt_wflw: np.ndarray) -> np.ndarray:
    """(68, 2) face-frame correction WFLW-derived -> 300W (see the module docstring)."""
    r300 = -face_frame_offsets(pred_w300, gt_w300).mean(0)
    rwflw = -face_frame_offsets(pred_wflw, gt_wflw).mean(0)
    return symmetrize(r300 - rwflw)


def apply_correction(landmarks: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """WFLW-derived (N, 68, 2) or (68, 2) landmarks -> 300W semantics."""
    pts = np.asarray(landmarks, np.float64)
    single = pts.ndim == 2
    pts = pts[None] if single else pts
    out = pts + from_face_frame(correction, pts)
    return (out[0] if single else out).astype(np.float32)


def group_summary(per_point: np.ndarray) -> dict[str, dict[str, float]]:
    """Per group: mean dx, dy and mean length of (68, 2) per-point offsets (inter-ocular units)."""
    out = {}
    for name, idx in {**GROUPS, "all": range(68)}.items():
        p = per_point[list(idx)]
        out[name] = {"dx": float(p[:, 0].mean()), "dy": float(p[:, 1].mean()),
                     "point_offset": float(np.linalg.norm(p, axis=-1).mean())}
    return out


def save_correction(correction: np.ndarray, path: str | Path, **info) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"correction": np.round(correction, 6).tolist(),
                                "groups": group_summary(correction), **info}, indent=1))
    return path
