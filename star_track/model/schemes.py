"""Landmark schemes: the single definition of point layouts used by the network, training and drawing.

A scheme fixes the number of points, the facial parts ("edges") they form, the left/right flip pairs,
the points used for normalising errors, and how to reduce the scheme to the 300W 68-point layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Edge:
    """A facial part drawn as a polyline through ``points``; ``closed`` joins the last point to the first."""

    name: str
    points: tuple[int, ...]
    closed: bool


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark layout (WFLW-98, 300W-68, COFW-29)."""

    name: str
    num_points: int
    edges: tuple[Edge, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    outer_eye_corners: tuple[int, int]
    """Normaliser for inter-ocular NME (image-left eye outer corner, image-right eye outer corner)."""
    eyes: tuple[tuple[int, ...], tuple[int, ...]]
    """Points of each eye, used for the inter-pupil normaliser when no pupil points exist."""
    pupils: tuple[int, int] | None = None
    to_68: tuple[int, ...] | None = None
    """Indices that reduce this scheme to 300W-68 (None if it cannot be reduced)."""
    names: tuple[str, ...] = field(default=())

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def flip_permutation(self) -> np.ndarray:
        """Index array that reorders points after a horizontal image flip."""
        perm = np.arange(self.num_points)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def edge_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """STAR's fixed edge->heatmap map: (N, E) 0/1 matrix and an (N,) bias (1 for points on no edge)."""
        m = np.zeros((self.num_points, self.num_edges), np.float32)
        for e, edge in enumerate(self.edges):
            m[list(edge.points), e] = 1.0
        bias = (m.sum(1) == 0).astype(np.float32)
        return m, bias

    def inter_ocular(self, pts: np.ndarray) -> np.ndarray:
        """Outer-eye-corner distance of (..., N, 2) points."""
        a, b = self.outer_eye_corners
        return np.linalg.norm(pts[..., a, :] - pts[..., b, :], axis=-1)

    def inter_pupil(self, pts: np.ndarray) -> np.ndarray:
        """Pupil distance (eye centroids when the scheme has no pupil points)."""
        if self.pupils is not None:
            a, b = self.pupils
            return np.linalg.norm(pts[..., a, :] - pts[..., b, :], axis=-1)
        left = pts[..., list(self.eyes[0]), :].mean(-2)
        right = pts[..., list(self.eyes[1]), :].mean(-2)
        return np.linalg.norm(left - right, axis=-1)

    def reduce_to_68(self, pts: np.ndarray) -> np.ndarray:
        """(..., N, 2) -> (..., 68, 2) in the 300W layout."""
        if self.num_points == 68:
            return pts
        if self.to_68 is None:
            raise ValueError(f"scheme {self.name} has no 68-point correspondence")
        return pts[..., list(self.to_68), :]


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


def _names(groups: list[tuple[str, int]]) -> tuple[str, ...]:
    out: list[str] = []
    for prefix, n in groups:
        out += [f"{prefix}_{i}" for i in range(n)]
    return tuple(out)


_FACE_PARTS = ("contour", "brow_a", "brow_b", "nose_bridge", "nose_bottom", "eye_a", "eye_b", "lip_outer",
               "lip_inner")
"""The parts of the 68- and 98-point schemes, in index order (each a run of consecutive points)."""


def _face_edges(starts: tuple[int, ...], last: int, closed: tuple[str, ...]) -> tuple[Edge, ...]:
    """The :data:`_FACE_PARTS` edges from each part's first index and the last part's last index; parts whose
    name starts with one of ``closed`` are closed polylines."""
    ends = (*(s - 1 for s in starts[1:]), last)
    return tuple(Edge(name, _r(a, b), name.startswith(closed)) for name, a, b in zip(_FACE_PARTS, starts, ends))


# --- 300W / iBUG 68 -------------------------------------------------------------------------------------
W300_68 = LandmarkScheme(
    name="300w68",
    num_points=68,
    edges=_face_edges(starts=(0, 17, 22, 27, 31, 36, 42, 48, 60), last=67, closed=("eye", "lip")),
    flip_pairs=tuple((i, 16 - i) for i in range(8))
    + tuple((17 + i, 26 - i) for i in range(5))
    + ((31, 35), (32, 34))
    + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))
    + ((48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)),
    outer_eye_corners=(36, 45),
    eyes=(_r(36, 41), _r(42, 47)),
    names=_names([("contour", 17), ("brow", 10), ("nose", 9), ("eye", 12), ("lip", 20)]),
)

# --- WFLW 98 --------------------------------------------------------------------------------------------
WFLW_98 = LandmarkScheme(
    name="wflw98",
    num_points=98,
    edges=_face_edges(starts=(0, 33, 42, 51, 55, 60, 68, 76, 88), last=95, closed=("brow", "eye", "lip")),
    flip_pairs=tuple((i, 32 - i) for i in range(16))
    + tuple((33 + i, 46 - i) for i in range(5))
    + ((38, 50), (39, 49), (40, 48), (41, 47))
    + ((55, 59), (56, 58))
    + ((60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73))
    + ((76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93))
    + ((96, 97),),
    outer_eye_corners=(60, 72),
    eyes=(_r(60, 67), _r(68, 75)),
    pupils=(96, 97),
    # 300W jaw = every second contour point; brows = upper brow points; eyes drop the mid-lid points.
    to_68=tuple(range(0, 33, 2)) + _r(33, 37) + _r(42, 46) + _r(51, 59)
    + (60, 61, 63, 64, 65, 67) + (68, 69, 71, 72, 73, 75) + _r(76, 95),
    names=_names([("contour", 33), ("brow", 18), ("nose", 9), ("eye", 16), ("lip", 20), ("pupil", 2)]),
)

# --- COFW 29 (Burgos-Artizzu et al.) --------------------------------------------------------------------
# 0-7 brows, 8-15 eyes (8/9 outer corners, 10/11 inner), 16/17 pupils, 18-21 nose, 22-27 mouth, 28 chin.
COFW_29 = LandmarkScheme(
    name="cofw29",
    num_points=29,
    edges=(
        Edge("brow_a", (0, 4, 2, 5), True),
        Edge("brow_b", (1, 6, 3, 7), True),
        Edge("eye_a", (8, 12, 10, 13), True),
        Edge("eye_b", (9, 14, 11, 15), True),
        Edge("nose", (18, 20, 19, 21), True),
        Edge("lip_outer", (22, 24, 23, 27), True),
        Edge("lip_inner", (22, 25, 23, 26), True),
    ),
    flip_pairs=((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19),
                (22, 23)),
    outer_eye_corners=(8, 9),
    eyes=((8, 10, 12, 13), (9, 11, 14, 15)),
    pupils=(16, 17),
    names=tuple(f"cofw_{i}" for i in range(29)),
)

SCHEMES: dict[str, LandmarkScheme] = {s.name: s for s in (WFLW_98, W300_68, COFW_29)}
_BY_COUNT = {s.num_points: s for s in SCHEMES.values()}


def get_scheme(name_or_count: str | int) -> LandmarkScheme:
    """Look a scheme up by name (``wflw98``, ``300w68``, ``cofw29``) or by landmark count."""
    if isinstance(name_or_count, int):
        if name_or_count not in _BY_COUNT:
            raise ValueError(f"no landmark scheme has {name_or_count} points (known: 98, 68, 29)")
        return _BY_COUNT[name_or_count]
    if name_or_count not in SCHEMES:
        raise ValueError(f"unknown landmark scheme {name_or_count!r} (known: {', '.join(SCHEMES)})")
    return SCHEMES[name_or_count]
