"""Hard-example oversampling: repeat the labelled training faces that a model still gets wrong.

A small student underfits the rare hard faces (large pose, blur, occlusion): on its own training set the fast
model's error on WFLW's large-pose faces is ~3x its average. Repeating the faces it misses puts more of each
epoch where the failures are. Only faces with true labels count as hard: on a pseudo-labelled face a large
error may be the teacher's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .annotations import FaceAnnotation


def training_errors(checkpoint: str | Path, faces: list[FaceAnnotation], image_root: Path,
                    norm: str = "inter_ocular") -> np.ndarray:
    """Per-face NME of ``checkpoint`` (EMA weights when present) on ``faces``, crops framed from their labels,
    no augmentation."""
    from .evaluate import load_network, per_face_nme

    return per_face_nme(load_network(checkpoint), faces, image_root, norm)


def oversample_hard(faces: list[FaceAnnotation], errors: np.ndarray, threshold: float,
                    repeat: int) -> list[FaceAnnotation]:
    """``faces`` with every labelled face whose error exceeds ``threshold`` present ``repeat`` times in all (the
    copies follow the originals, so the first ``len(faces)`` entries are unchanged)."""
    if len(errors) != len(faces):
        raise ValueError(f"{len(errors)} errors for {len(faces)} faces")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    hard = [f for f, e in zip(faces, errors) if e > threshold and f.split != "pseudo"]
    return list(faces) + hard * (repeat - 1)
