"""Pseudo-labels for unlabeled photos, for semi-supervised training of a compact model.

A teacher model runs through the SDK with flip averaging (``Tracker(flip_test=True)``): its detector finds the
faces, its new-face path frames them, and each face is predicted once more on a crop framed from its
landmarks. Every prediction averages the crop and its mirror image, so the label is better than the teacher's
plain output and the student (trained on it with the full augmentation) has something to learn from it. Faces are
kept only when the teacher is confident and the face is large enough to be labelled precisely.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from star_track.crop import crop_from_landmarks

from .annotations import FaceAnnotation

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def pseudo_label(model: str | Path, image_dir: Path, relative_to: Path, min_score: float = 0.7,
                 min_size: float = 80.0, max_faces: int = 8, progress: bool = True) -> list[FaceAnnotation]:
    """Label every face the teacher ``model`` finds in the images under ``image_dir``.

    Kept: faces with confidence >= ``min_score`` whose landmark box is at least ``min_size`` pixels on its
    longer side. Image paths are written relative to ``relative_to`` (the training ``image_root``).
    """
    import cv2
    from rich.progress import track

    from star_track import Tracker

    tracker = Tracker(model, max_faces=max_faces, flip_test=True)
    meta, scheme = tracker.meta, tracker.model_scheme
    images = sorted(p for p in Path(image_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images under {image_dir}")
    faces: list[FaceAnnotation] = []
    for path in track(images, description="pseudo-labelling", disable=not progress):
        image = cv2.imread(str(path))
        if image is None:
            continue
        kept = [f for f in tracker.detect_image(image)
                if f.score >= min_score and np.ptp(f.raw_landmarks, axis=0).max() >= min_size]
        if not kept:
            continue
        # One more flip-averaged pass on crops framed from the landmarks, as the tracker frames faces on video.
        crops = [crop_from_landmarks(f.raw_landmarks, meta.input_size, meta.crop_scale, rotate=True,
                                     eye_corners=scheme.outer_eye_corners) for f in kept]
        means, _ = tracker.engine.infer(np.stack([c.warp(image) for c in crops]))
        rel = os.path.relpath(path, relative_to)
        for face, crop, mean in zip(kept, crops, means):
            points, _ = crop.normalized_to_frame(mean, np.zeros((len(mean), 2, 2), np.float32))
            faces.append(FaceAnnotation(rel, points.astype(np.float32), tuple(float(v) for v in face.box),
                                        split="pseudo", extra={"teacher_score": round(float(face.score), 3)}))
    return faces
