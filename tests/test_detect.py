"""BlazeFace wrapper: finds a real face, both modes, both bundled models, clear errors for bad model files."""
from __future__ import annotations

import numpy as np
import pytest

import star_track.detection.blazeface as blazeface
from star_track.detection.blazeface import BUNDLED_DETECTORS, FaceDetector
from star_track.errors import DetectorError
from star_track.hashing import sha256_file
from star_track.detection.boxes import box_iou


def test_bundled_checksums_match():
    for name, (fname, digest) in BUNDLED_DETECTORS.items():
        assert sha256_file(blazeface.BUNDLED_DIR / fname) == digest, name


@pytest.mark.parametrize("model", ["short", "full"])
def test_detects_real_face(face_photo, model):
    img, pts, box = face_photo
    with FaceDetector(model, mode="image") as det:
        found = det.detect(img)
    assert found, "no face found in a clean, large WFLW face"
    best = max(found, key=lambda d: box_iou(d.box[None], box[None])[0, 0])
    assert box_iou(best.box[None], box[None])[0, 0] > 0.4
    assert 0 < best.score <= 1 and best.keypoints.shape == (6, 2)
    # eye keypoints lie near the annotated eye centres (68-pt: 36-41 image-left eye, 42-47 image-right eye)
    left, right = pts[36:42].mean(0), pts[42:48].mean(0)
    iod = np.linalg.norm(left - right)
    assert np.linalg.norm(best.keypoints[0] - left) < 0.5 * iod
    assert np.linalg.norm(best.keypoints[1] - right) < 0.5 * iod


def test_video_mode_accepts_repeated_and_missing_timestamps(face_photo):
    img = face_photo[0]
    with FaceDetector("short", mode="video") as det:
        a = det.detect(img, 0)
        b = det.detect(img, 0)  # not increasing: bumped internally instead of a mediapipe error
        c = det.detect(img)
    assert len(a) == len(b) == len(c) >= 1
    assert np.allclose(a[0].box, c[0].box, atol=2)


def test_blank_and_tiny_frames_have_no_faces():
    with FaceDetector("short", mode="image") as det:
        assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []
        assert det.detect(np.full((16, 16, 3), 128, np.uint8)) == []
        with pytest.raises(ValueError, match="uint8 BGR"):
            det.detect(np.zeros((10, 10), np.uint8))


def test_model_errors(tmp_path, monkeypatch):
    with pytest.raises(DetectorError, match="does not exist"):
        FaceDetector(tmp_path / "none.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(DetectorError, match="could not be loaded"):
        FaceDetector(garbage)
    with pytest.raises(ValueError, match="mode"):
        FaceDetector("short", mode="live")
    # a bundled file that fails its checksum is refused
    fname, digest = BUNDLED_DETECTORS["short"]
    bad = tmp_path / fname
    data = bytearray((blazeface.BUNDLED_DIR / fname).read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(blazeface, "BUNDLED_DIR", tmp_path)
    with pytest.raises(DetectorError, match="sha256"):
        FaceDetector("short")


def test_user_supplied_tflite(tmp_path, face_photo):
    user = tmp_path / "my_detector.tflite"
    user.write_bytes((blazeface.BUNDLED_DIR / BUNDLED_DETECTORS["full"][0]).read_bytes())
    with FaceDetector(str(user), mode="image") as det:
        assert det.detect(face_photo[0])
