"""A 3D mean face for the 300W 68-point and WFLW 98-point layouts, from MediaPipe's canonical face model.

Source and licence: the vertices are MediaPipe's canonical face model (``face_model_with_iris.obj`` in
google-ai-edge/mediapipe ``mediapipe/modules/face_geometry/data/``; Copyright 2020 The MediaPipe Authors,
Apache License 2.0, copy in ``LICENSE-mediapipe.txt`` beside this module). They are kept verbatim in
:mod:`star_track.analysis._canonical_face_data`.

300W 68 points: one mesh vertex per landmark, the map in ``shared/docs/PEERS.md`` (:data:`MESH_TO_300W68`).

WFLW 98 points: :data:`MESH_TO_WFLW98`, one mesh vertex per landmark, or for 8 contour points the midpoint of
an edge of MediaPipe's face oval. No public 98-point map was found (not in MediaPipe, WFLW or the public
468 -> 68 maps), so it is derived here from the 68-point map, the WFLW point definitions (Wu et al., "Look at
Boundary", CVPR 2018: 33 contour points, brows as closed upper + lower arcs, 8 points per eye, 20 mouth, 2 pupils)
and the named vertex groups of MediaPipe's ``face_mesh_connections.py`` (``FACEMESH_FACE_OVAL``,
``FACEMESH_RIGHT_EYEBROW`` / ``LEFT_EYEBROW``, ``FACEMESH_RIGHT_EYE`` / ``LEFT_EYE``, the iris centres 468 / 473):

* contour 0-32: the even points are the 300W jaw vertices (WFLW's own 98 -> 68 reduction keeps them); each odd
  point is the face-oval vertex between its two neighbours (127, 132, 150, 176, 400, 379, 361, 356) or, where
  the two are adjacent on the oval, the midpoint of that oval edge;
* upper brows 33-37 / 42-46, nose 51-59, eye corners, the lid centres 62 66 70 74 (mesh 159 145 386 374), the
  outer lips 76-87 and the inner-lip corners and centres: the 300W vertices or their mesh neighbours on the
  same contour; the pupils 96 / 97: the iris centres 468 / 473;
* where WFLW places a point elsewhere than 300W does, the next vertex along the same mesh contour: the lower
  brow arcs 38-41 / 47-50 are 55 65 52 53 / 283 282 295 285 (the mesh's lower arc, inner to outer and back),
  the outer upper and lower lid points 61 67 / 71 73 are 161 163 / 388 390, the inner-lip points 89 91 93 95
  are 81 311 402 178. These were chosen by fitting the mean face to the shared WFLW training labels
  (``list_98pt_rect_attr_train.txt``, every 4th face with |yaw| < 30 degrees) and taking, among a point's
  neighbouring vertices on its contour, the one with the smallest median offset: the median point residual
  fell from 0.067 to 0.059 of the inter-ocular distance, the lower brows' from ~0.13 to ~0.03. The same
  check on the 300W training labels keeps the 68-point map as it is (its lids and inner lips fit best).

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

MESH_TO_WFLW98: tuple[int | tuple[int, int], ...] = (
    162, 127, 234, (234, 93), 93, 132, 58, (58, 172), 172, (172, 136), 136, 150, 149, 176, 148, (148, 152),
    152, (152, 377), 377, 400, 378, 379, 365, (365, 397), 397, (397, 288), 288, 361, 323, (323, 454), 454, 356,
    389,  # contour 0-32
    70, 63, 105, 66, 107, 55, 65, 52, 53,  # right brow 33-41 (upper outer -> inner, lower inner -> outer)
    336, 296, 334, 293, 300, 283, 282, 295, 285,  # left brow 42-50 (upper inner -> outer, lower outer -> inner)
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 51-59
    33, 161, 159, 158, 133, 153, 145, 163,  # right eye 60-67
    362, 385, 386, 388, 263, 390, 374, 380,  # left eye 68-75
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 76-87
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips 88-95
    468, 473,  # pupils 96-97 (iris centres)
)
"""MediaPipe mesh vertex of each WFLW landmark; a pair is the midpoint of that face-oval edge (see module docs)."""

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


def _vertices(table: tuple[int | tuple[int, int], ...], mesh: np.ndarray) -> np.ndarray:
    return np.array([(mesh[v[0]] + mesh[v[1]]) / 2 if isinstance(v, tuple) else mesh[v] for v in table])


def _sigma_98() -> np.ndarray:
    # The 300W uncertainty of each region; the extra lower-brow points as the brows, mid-lids and pupils as
    # the eyes.
    return np.array([1.0] * 33 + [0.5] * 18 + [0.25] * 9 + [0.25] * 16 + [0.45] * 20 + [0.25] * 2)


@lru_cache(maxsize=4)
def _mean_face(n: int) -> MeanFace:
    mesh = canonical_mesh()
    if n == 68:
        pts, sig, name = mesh[list(MESH_TO_300W68)], _SIGMA_68.copy(), "300w68"
    else:
        pts, sig, name = _vertices(MESH_TO_WFLW98, mesh), _sigma_98(), "wflw98"
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
