"""Yaw, pitch, roll and their sd from rotations, translations and rotation covariances, vectorised over faces.

The angles are :func:`~.pose.euler_from_rotation` of each rotation relative to its face's line of sight and the
sd are :func:`~.pose._angle_sd`, written for (F, ...) arrays, with a Python-float path for the one-face case.
"""
from __future__ import annotations

import math

import numpy as np

from .pose import _DEG

_NEG_SIGN = np.array([-1.0, 1.0, 1.0])  # minus the diagonal of pose._F (OpenCV <-> y-up frames)


def _cols(*columns: np.ndarray) -> np.ndarray:
    """(F, k) array from k arrays of shape (F,) (np.stack costs several times more on small arrays)."""
    return np.concatenate(columns).reshape(len(columns), -1).T


def pose_angles(rot: np.ndarray, t: np.ndarray, cov_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3) yaw, pitch, roll and (F, 3) their sd in degrees from rotations (F, 3, 3), translations (F, 3)
    and camera-frame rotation covariances (F, 3, 3) rad^2: vectorised :func:`~.pose.euler_from_rotation`
    of the rotation relative to the line of sight, and :func:`~.pose._angle_sd`."""
    if len(rot) == 1:
        one = _angles_one(rot[0].tolist(), t[0].tolist(), cov_w[0].tolist())
        if one is not None:
            return np.array([one[0]]), np.array([one[1]])
    d = t / np.sqrt(np.einsum("ij,ij->i", t, t))[:, None]
    # rel = view^T rot, view the smallest rotation turning the optical axis onto d. Its columns are
    # e0 - d_x u, e1 - d_y u and d with u = (d_x, d_y, 0) / (1 + d_z) + e2, so no 3x3 view matrix is built.
    u = d / (1.0 + d[:, 2:3])
    u[:, 2] = 1.0
    ur = np.einsum("fk,fkj->fj", u, rot)
    top = rot[:, :2] - d[:, :2, None] * ur[:, None, :]  # rel rows 0 and 1
    r22 = np.einsum("fk,fk->f", d, rot[:, :, 2])
    r00, r01 = top[:, 0, 0], top[:, 0, 1]
    ang = np.arctan2(np.concatenate([top[:, 0, 2], top[:, 1, 2], -r01]).reshape(3, -1),
                     np.concatenate([np.hypot(r00, r01), r22, r00]).reshape(3, -1))
    c, s = np.cos(ang), np.sin(ang)
    # Euler rates of M = (F rel F)^T = Rz(roll) Ry(yaw) Rx(pitch) from a camera-frame increment w: M moves by
    # -M F view^T w = -F rot^T w in its space frame (see pose._angle_sd).
    icy = 1.0 / np.maximum(c[0], 1e-6)  # |yaw| <= 90 degrees: cos(yaw) >= 0
    cr, sr = c[2], s[2]
    zero = np.zeros_like(icy)
    einv = _cols(-sr, cr, zero, cr * icy, sr * icy, zero, s[0] * cr * icy, s[0] * sr * icy, zero + 1.0)
    jac = einv.reshape(-1, 3, 3) @ (rot.transpose(0, 2, 1) * _NEG_SIGN[:, None])
    var = ((jac @ cov_w) * jac).sum(2)
    return ang.T * _DEG, np.sqrt(np.maximum(var, 0.0)) * _DEG


def pose_angles_lists(rot: np.ndarray, t: np.ndarray, cov_w: np.ndarray) -> tuple[list[list[float]], ...]:
    """:func:`pose_angles` as nested lists (F x 3 each). Up to 8 faces go through the Python-float path, face by
    face: it costs about an eighth of the vectorised one per face, whose fixed cost only more faces amortise."""
    if len(rot) <= 8:
        angles, sds = [], []
        for r, tt, c in zip(rot.tolist(), t.tolist(), cov_w.tolist()):
            one = _angles_one(r, tt, c)
            if one is None:  # a zero translation: numpy's inf / NaN semantics below
                break
            angles.append(one[0])
            sds.append(one[1])
        else:
            return angles, sds
    a, sd = pose_angles(rot, t, cov_w)
    return a.tolist(), sd.tolist()


def _angles_one(r: list, t: list, cov: list) -> tuple[list[float], list[float]] | None:
    """:func:`pose_angles` of one face in Python floats (the same formulas); None where a division by zero
    would need numpy's inf / NaN semantics."""
    try:
        n = math.sqrt(t[0] * t[0] + t[1] * t[1] + t[2] * t[2])
        d0, d1, d2 = t[0] / n, t[1] / n, t[2] / n
        u0, u1 = d0 / (1.0 + d2), d1 / (1.0 + d2)
    except ZeroDivisionError:
        return None
    (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = r
    ur0, ur1, ur2 = u0 * a00 + u1 * a10 + a20, u0 * a01 + u1 * a11 + a21, u0 * a02 + u1 * a12 + a22
    r00, r01, r02 = a00 - d0 * ur0, a01 - d0 * ur1, a02 - d0 * ur2
    r12 = a12 - d1 * ur2
    r22 = d0 * a02 + d1 * a12 + d2 * a22
    yaw, pitch, roll = math.atan2(r02, math.hypot(r00, r01)), math.atan2(r12, r22), math.atan2(-r01, r00)
    cy, sy, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll)
    icy = 1.0 / max(cy, 1e-6) if cy == cy else math.nan
    e = ((-sr, cr, 0.0), (cr * icy, sr * icy, 0.0), (sy * cr * icy, sy * sr * icy, 1.0))
    # jac = einv @ (rot^T * (-1, 1, 1) by row), var_i = jac_i^T cov jac_i (see pose_angles); written out, as
    # comprehensions and generators cost more than the arithmetic here.
    (c00, c01, c02), (c10, c11, c12), (c20, c21, c22) = cov
    sd = []
    for e0, e1, e2 in e:
        j0, j1, j2 = e0 * -a00 + e1 * a01 + e2 * a02, e0 * -a10 + e1 * a11 + e2 * a12, e0 * -a20 + e1 * a21 + e2 * a22
        var = (j0 * (c00 * j0 + c01 * j1 + c02 * j2) + j1 * (c10 * j0 + c11 * j1 + c12 * j2)
               + j2 * (c20 * j0 + c21 * j1 + c22 * j2))
        sd.append(math.sqrt(var) * _DEG if var > 0.0 else (0.0 if var == var else math.nan))
    return [yaw * _DEG, pitch * _DEG, roll * _DEG], sd
