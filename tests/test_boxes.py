"""The one box IoU and non-maximum suppression (star_track.detection.boxes)."""
import numpy as np

from star_track.detection.boxes import box_iou, nms


def test_box_iou_matrix():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5, 0, 15, 10]])
    m = box_iou(a, b)
    assert m.shape == (2, 1)
    assert np.isclose(m[0, 0], 50 / 150) and m[1, 0] == 0


def test_nms_keeps_the_best_of_overlapping_boxes_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 1, 10, 11]], float)
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    assert nms(boxes, scores, iou=0.3) == [1, 2]  # boxes 0 and 3 overlap box 1 (IoU ~0.8), the better one
    assert nms(boxes, scores, iou=0.95) == [1, 3, 2, 0]  # nothing overlaps that much: all kept, by score


def test_nms_drops_only_above_the_threshold_and_breaks_ties_by_position():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)  # IoU exactly 1/3
    assert nms(boxes, np.array([0.5, 0.5]), iou=1 / 3) == [0, 1]
    assert nms(boxes, np.array([0.5, 0.5]), iou=0.3) == [0]
    assert nms(boxes[:0], np.array([]), iou=0.3) == [] and nms(boxes[:1], np.array([0.1]), iou=0.3) == [0]
