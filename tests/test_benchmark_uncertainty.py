"""benchmarks.uncertainty: the non-face patches used to measure the confidence score avoid the labelled faces."""
from types import SimpleNamespace

import cv2
import numpy as np

from benchmarks.uncertainty import non_face_patches


def test_non_face_patches_never_overlap_a_labelled_face(tmp_path):
    img = np.zeros((400, 600, 3), np.uint8)
    img[100:200, 250:350] = 255  # the "face": the only white pixels in the photo
    cv2.imwrite(str(tmp_path / "a.png"), img)
    ring = np.stack([300 + 40 * np.cos(np.linspace(0, 6, 68)), 150 + 40 * np.sin(np.linspace(0, 6, 68))], 1)
    faces = [SimpleNamespace(image="a.png", landmarks=ring)]
    patches = non_face_patches(faces, tmp_path, size=32, per_image=5)
    assert patches.shape == (5, 32, 32, 3)
    assert patches.max() == 0  # a patch touching the face box would carry white pixels


def test_photos_smaller_than_a_face_patch_are_skipped(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((400, 600, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((60, 60, 3), np.uint8))
    ring = lambda cx, cy, r: np.stack([cx + r * np.cos(np.linspace(0, 6, 68)),  # noqa: E731
                                       cy + r * np.sin(np.linspace(0, 6, 68))], 1)
    faces = [SimpleNamespace(image="a.png", landmarks=ring(100, 100, 30)),
             SimpleNamespace(image="b.png", landmarks=ring(30, 30, 25))]
    assert len(non_face_patches(faces, tmp_path, size=16, per_image=3)) == 3
