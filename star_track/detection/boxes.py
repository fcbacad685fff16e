"""Box geometry shared by detection and tracking: IoU and the one non-maximum suppression of star-track.

Boxes are ``x1, y1, x2, y2`` pixels.
"""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x1, y1, x2, y2 boxes."""
    a, b, inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def box_inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)): the share of each box of ``a``'s area that lies inside each box of ``b``."""
    a, b, inter = _intersection(a, b)
    return inter / np.maximum(_area(a), 1e-9)[:, None]


def box_in_frame(box: np.ndarray, frame_shape: tuple[int, ...]) -> bool:
    """The box (x1, y1, x2, y2) overlaps an (H, W, ...) frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return x2 > 0 and y2 > 0 and x1 < frame_shape[1] and y1 < frame_shape[0]


def _intersection(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return a, b, np.clip(rb - lt, 0, None).prod(-1)


def _area(x: np.ndarray) -> np.ndarray:
    return np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    Boxes are visited by descending score (equal scores: the earlier box first); one is kept unless its IoU with
    a box already kept is above ``iou``.
    """
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    if len(order) < 2:
        return [int(i) for i in order]
    m = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(m[i, j] <= iou for j in keep):
            keep.append(int(i))
    return keep
