"""Fit the detector-box -> crop mapping so a BlazeFace box frames a face like the training crops do.

For every training face the detector finds, compare its box with the landmark-defined crop
(:func:`star_track.crop.crop_from_landmarks`) and take robust medians of the centre offset (in box sides)
and the side ratio. The result is stored in the model's metadata as ``box_calibration``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from star_track.crop import LANDMARK_CROP_SCALE, crop_from_landmarks
from star_track.detection.blazeface import FaceDetector

from .annotations import FaceAnnotation


def match_to_face(centres: np.ndarray, landmarks: np.ndarray, box=None) -> int | None:
    """Index of the candidate (detection / prediction centre) nearest the face's landmark centre that lies inside
    the face's box (its landmarks' bounding box when ``box`` is None); None = the face was missed."""
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    if len(centres) == 0:
        return None
    pts = np.asarray(landmarks, np.float64)
    box = np.asarray(box if box is not None else [*pts.min(0), *pts.max(0)], np.float64)
    inside = np.all((centres >= box[:2]) & (centres <= box[2:]), axis=1)
    if not inside.any():
        return None
    d = np.linalg.norm(centres - pts.mean(0), axis=1)
    d[~inside] = np.inf
    return int(np.argmin(d))


def box_to_crop(box, landmarks: np.ndarray, crop_scale: float = LANDMARK_CROP_SCALE) -> tuple[float, float, float]:
    """(dx, dy, k) that maps ``box`` onto the landmark-defined crop of the same face (one sample)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    crop = crop_from_landmarks(landmarks, 1, crop_scale)
    return ((crop.center[0] - (x1 + x2) / 2) / side, (crop.center[1] - (y1 + y2) / 2) / side, crop.side / side)


def fit_box_calibration(faces: list[FaceAnnotation], image_root: str | Path, detector: str = "full",
                        crop_scale: float = LANDMARK_CROP_SCALE) -> tuple[tuple[float, float, float], dict]:
    """Returns ((dx, dy, k), stats) for :func:`star_track.crop.crop_from_box`."""
    rows, images_seen = [], {}
    with FaceDetector(detector, mode="image", min_confidence=0.3) as det:
        for face in faces:
            path = Path(image_root) / face.image
            if face.image not in images_seen:
                img = cv2.imread(str(path))
                if img is None:
                    raise FileNotFoundError(f"cannot read image {path}")
                images_seen[face.image] = np.array([d.box for d in det.detect(img)]).reshape(-1, 4)
            boxes = images_seen[face.image]
            i = match_to_face((boxes[:, :2] + boxes[:, 2:]) / 2, face.landmarks)
            if i is not None:
                rows.append(box_to_crop(boxes[i], face.landmarks, crop_scale))
    if len(rows) < 10:
        raise RuntimeError(f"only {len(rows)} faces detected with the {detector} detector; cannot calibrate")
    r = np.asarray(rows)
    calib = tuple(float(v) for v in np.median(r, 0))
    spread = np.percentile(r, 75, 0) - np.percentile(r, 25, 0)
    stats = {"detector": detector, "faces": len(faces), "matched": len(rows),
             "iqr_dx_dy_k": [round(float(v), 4) for v in spread]}
    return calib, stats
