"""A 3D mean face for the 300W 68-point and WFLW 98-point layouts, from MediaPipe's canonical face model.

Source and licence: the vertices are MediaPipe's canonical face model (``face_model_with_iris.obj`` in
google-ai-edge/mediapipe ``mediapipe/modules/face_geometry/data/``; Copyright 2020 The MediaPipe Authors,
Apache License 2.0, copy in ``LICENSE-mediapipe.txt`` beside this module). They are kept verbatim in
:mod:`star_track.analysis._canonical_face_data`.

300W 68 points: one mesh vertex per landmark, the map in ``shared/docs/PEERS.md`` (:data:`MESH_TO_300W68`).
WFLW 98 points, derived (no 98-point map exists in :mod:`star_track.model.schemes`, only 98 -> 68):

* the 17 even contour points are the 300W jaw; each odd one is the mesh vertex that lies between them on the
  face oval where there is one (127, 132, 150, 176, 400, 379, 361, 356), else the 3D midpoint of its neighbours;
* the upper brows, nose, eye corners and lids and both lips are the 300W vertices; the lower brow arcs are mesh
  vertices 65 52 53 46 / 276 283 282 295, the mid-lid points 159 145 / 386 374 and the pupils the iris centres
  468 / 473.

Frame: the points are returned in the OpenCV object frame used by :mod:`star_track.analysis.pose`: +x toward the
image right of a frontal face (the subject's left), +y down, +z into the head (away from the camera), in
centimetres, origin at MediaPipe's canonical origin (about 5 cm behind the face surface). A face with rotation
identity at translation (0, 0, d) looks straight at the camera, upright.

The mesh's 68-point jaw is its outer face oval, a fixed curve; a landmark model's jaw is the visible silhouette,
which slides over the face as the head turns. :attr:`MeanFace.sigma` gives such points a larger model
uncertainty so the pose solver trusts them less.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._canonical_face_data import OBJ_VERTICES

MESH_TO_300W68: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)
"""MediaPipe mesh vertex of each 300W landmark (shared/docs/PEERS.md)."""

# WFLW odd contour points: mesh vertex between two 300W jaw vertices on the face oval, or -1 for a midpoint.
_WFLW_ODD_CONTOUR = (127, -1, 132, -1, -1, 150, 176, -1, -1, 400, 379, -1, -1, 361, -1, 356)
_WFLW_LOWER_BROWS = ((38, 65), (39, 52), (40, 53), (41, 46), (47, 276), (48, 283), (49, 282), (50, 295))
_WFLW_MID_LIDS = ((62, 159), (66, 145), (70, 386), (74, 374))
_WFLW_PUPILS = ((96, 468), (97, 473))

# Model uncertainty of each 300W point (cm, isotropic): how far a real face's landmark sits from the mean
# face's, beyond the landmark error. The jaw is a silhouette (see the module docs), brows and mouth move with
# expression; the eye corners and nose are the rigid core.
_SIGMA_68 = np.array([1.0] * 17 + [0.5] * 10 + [0.25] * 9 + [0.25] * 12 + [0.45] * 20)


@dataclass(frozen=True)
class MeanFace:
    """3D landmark positions of an average face, one per landmark of ``scheme``."""

    scheme: str
    """``"300w68"`` or ``"wflw98"``."""
    points: np.ndarray
    """(N, 3) float64, centimetres, OpenCV object frame (x subject's left, y down, z into the head)."""
    sigma: np.ndarray
    """(N,) model uncertainty of each point in cm (larger = trusted less by the pose solver)."""
    source: str = "MediaPipe canonical face model (Apache-2.0)"


@lru_cache(maxsize=1)
def canonical_mesh() -> np.ndarray:
    """(478, 3) MediaPipe canonical face vertices (468 mesh + 10 iris) in MediaPipe's frame (cm, y up, z out)."""
    rows = [line.split()[1:] for line in OBJ_VERTICES.splitlines() if line.startswith("v ")]
    return np.array(rows, dtype=np.float64)


def _to_object_frame(p: np.ndarray) -> np.ndarray:
    # MediaPipe (x left-of-subject, y up, z toward viewer) -> OpenCV object frame (y down, z into the head).
    return p * np.array([1.0, -1.0, -1.0])


def _build_98(m68_mesh: np.ndarray, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.zeros((98, 3))
    sig = np.zeros(98)
    jaw, jaw_sig = m68_mesh[:17], _SIGMA_68[:17]
    pts[0:33:2], sig[0:33:2] = jaw, jaw_sig
    for k, v in enumerate(_WFLW_ODD_CONTOUR):
        pts[2 * k + 1] = mesh[v] if v >= 0 else (jaw[k] + jaw[k + 1]) / 2
        sig[2 * k + 1] = jaw_sig[k]
    # Every other 98 point that has a 300W partner (schemes' WFLW to_68 order): brows, nose, eyes, lips.
    same = list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60)) + [60, 61, 63, 64, 65, 67] + \
        [68, 69, 71, 72, 73, 75] + list(range(76, 96))
    for j68, j98 in enumerate(same, start=17):
        pts[j98], sig[j98] = m68_mesh[j68], _SIGMA_68[j68]
    for j98, v in _WFLW_LOWER_BROWS:
        pts[j98], sig[j98] = mesh[v], 0.5
    for j98, v in _WFLW_MID_LIDS + _WFLW_PUPILS:
        pts[j98], sig[j98] = mesh[v], 0.25
    return pts, sig


@lru_cache(maxsize=4)
def _mean_face(n: int) -> MeanFace:
    mesh = canonical_mesh()
    m68 = mesh[list(MESH_TO_300W68)]
    if n == 68:
        pts, sig, name = m68, _SIGMA_68.copy(), "300w68"
    else:
        pts, sig = _build_98(m68, mesh)
        name = "wflw98"
    pts = _to_object_frame(pts)
    pts.setflags(write=False)
    sig.setflags(write=False)
    return MeanFace(name, pts, sig)


def mean_face(scheme: int | str = 68) -> MeanFace:
    """The mean face for a layout: ``68`` / ``"300w68"`` or ``98`` / ``"wflw98"`` (read-only arrays, cached).

    Raises :class:`ValueError` (a :class:`~star_track.errors.ModelError`) for any other layout.
    """
    from star_track.errors import ModelError

    key = {68: 68, 98: 98, "300w68": 68, "wflw98": 98}.get(scheme)
    if key is None:
        raise ModelError(f"no 3D mean face for landmark layout {scheme!r} (known: 68 / 300w68, 98 / wflw98)")
    return _mean_face(key)
