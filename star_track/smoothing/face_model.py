"""Geometry of the face-level smoother: its shape basis, facial parts, measurement noise and 2D similarity helpers."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..model.schemes import get_scheme

BASIS_FILE = Path(__file__).with_name("shape_basis.npz")
J = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90° rotation


@lru_cache(maxsize=4)
def load_basis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(mean (N, 2), modes (N, 2, K), variances (K,), region names (K,)) for ``n`` points, or None.

    The similarity directions at the mean (translation, scale, rotation) are projected out of the modes: the
    rigid motion is estimated beside them, so the two must not overlap.
    """
    if not BASIS_FILE.is_file():
        return None
    with np.load(BASIS_FILE) as z:
        if f"mean_{n}" not in z:
            return None
        mean = z[f"mean_{n}"].astype(np.float64)
        modes = z[f"modes_{n}"].astype(np.float64).reshape(-1, 2 * n).T  # (2N, K)
        var = z[f"var_{n}"].astype(np.float64)
        regions = z["regions"][z[f"region_{n}"].astype(int)]
    sim = np.stack([np.tile([1.0, 0.0], n), np.tile([0.0, 1.0], n), mean.ravel(), (mean @ J.T).ravel()], 1)
    q, _ = np.linalg.qr(sim)
    modes = modes - q @ (q.T @ modes)
    return mean, modes.reshape(n, 2, -1), var, regions


def point_parts(n: int, mean: np.ndarray) -> np.ndarray | None:
    """(N,) gating group of every landmark, or None for a point count without a known scheme.

    Groups are the parts that move as one when the face changes expression: an open part of the scheme (contour,
    each brow of 68 points, the nose) is one group; a closed one (an eye, a lip line) is cut into its two corners
    and the two sides between them (upper and lower lid, upper and lower lip), found on ``mean`` (N, 2): the
    corners are the part's two points farthest apart, the sides lie on either side of the line through them. A
    blink moves both lids of one eye in a few frames while its corners stay; pooling a side's points lets the
    movement stand out of the noise where one point's does not, and the corners or the other parts do not dilute
    it. A point on no edge (a pupil) is its own group."""
    try:
        scheme = get_scheme(n)
    except ValueError:
        return None
    merge = {"nose_bottom": "nose_bridge"}
    group = np.full(n, -1)
    count = 0
    for name in dict.fromkeys(merge.get(e.name, e.name) for e in scheme.edges):
        edges = [e for e in scheme.edges if merge.get(e.name, e.name) == name]
        pts = np.array(sorted({i for e in edges for i in e.points}))
        if not all(e.closed for e in edges) or len(pts) < 4:
            group[pts], count = count, count + 1
            continue
        d = np.linalg.norm(mean[pts, None] - mean[None, pts], axis=-1)
        a, b = np.unravel_index(np.argmax(d), d.shape)
        u = mean[pts[b]] - mean[pts[a]]
        side = np.sign(u[0] * (mean[pts, 1] - mean[pts[a], 1]) - u[1] * (mean[pts, 0] - mean[pts[a], 0]))
        side[[a, b]] = 0  # the corners
        for s in np.unique(side):
            group[pts[side == s]], count = count, count + 1
    alone = np.flatnonzero(group < 0)
    group[alone] = count + np.arange(len(alone))
    # Numbered 0..G-1 with none empty: parts that share points (COFW's two lip lines share their corners) lose
    # those points to the later part, and an emptied group would be a 0 / 0 in the filter's pooled gate.
    return np.unique(group, return_inverse=True)[1].ravel()


def measurement_noise(cov: np.ndarray, scale: float | np.ndarray, r_scale: float, r_floor: float) -> np.ndarray:
    """R (N, 2, 2) = r_scale Σ + (r_floor scale)² I, Σ symmetrised and clipped to PSD (closed form for 2x2);
    a non-finite Σ counts as face-sized. ``scale``: the face size, or one per point (N,)."""
    c = np.asarray(cov, np.float64)
    a, b, d = c[:, 0, 0], 0.5 * (c[:, 0, 1] + c[:, 1, 0]), c[:, 1, 1]
    if not np.isfinite(c).all():
        bad = ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(d))
        a, b, d = np.where(bad, scale ** 2, a), np.where(bad, 0.0, b), np.where(bad, scale ** 2, d)
    # Clip negative eigenvalues: λ = m ± r; shift so the smaller is >= 0 (keeps the eigenvectors).
    m, r = 0.5 * (a + d), np.hypot(0.5 * (a - d), b)
    lo = m - r
    shift = np.where(lo < 0, -lo, 0.0)
    floor = (r_floor * scale) ** 2
    out = np.empty((len(a), 2, 2))
    out[:, 0, 0] = r_scale * (a + shift) + floor
    out[:, 1, 1] = r_scale * (d + shift) + floor
    out[:, 0, 1] = out[:, 1, 0] = r_scale * b
    return out


def inv2(m: np.ndarray) -> np.ndarray:
    """Inverses of (N, 2, 2) matrices (closed form)."""
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    out = np.empty_like(m)
    out[:, 0, 0], out[:, 1, 1] = m[:, 1, 1] / det, m[:, 0, 0] / det
    out[:, 0, 1], out[:, 1, 0] = -m[:, 0, 1] / det, -m[:, 1, 0] / det
    return out


def rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def similarity_init(z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Unweighted least-squares similarity (t_x, t_y, log s, theta) mapping ``ref`` (centred) onto ``z``."""
    zc = z - z.mean(0)
    n = float((ref ** 2).sum())
    a = float((ref * zc).sum()) / n
    b = float((ref[:, 0] * zc[:, 1] - ref[:, 1] * zc[:, 0]).sum()) / n
    t = z.mean(0) - (ref.mean(0) @ np.array([[a, -b], [b, a]]).T)
    return np.array([t[0], t[1], np.log(max(np.hypot(a, b), 1e-9)), np.arctan2(b, a)])
