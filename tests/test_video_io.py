"""Video source/sink and landmark files: clear errors, atomic outputs, streaming landmark files."""
from __future__ import annotations

import json
import os
import struct
import sys

import cv2
import numpy as np
import pytest

from conftest import DATA, to_variable_rate, write_video
from star_track.errors import OutputError, VideoError
from star_track.io.images import read_image
from star_track.io.landmarks import open_landmark_writer, read_landmarks_csv
from star_track.io.paths import check_output_path
from star_track.io.sink import VideoSink
from star_track.io.source import VideoSource
from star_track import Face

CLIP = DATA / "videos" / "RD_Radio2_000.mp4"


def _frames(n=5, w=64, h=48):
    return [np.full((h, w, 3), (20 * i) % 256, np.uint8) for i in range(n)]


def test_source_reads_real_clip():
    if not CLIP.exists():
        pytest.skip("clip not available")
    with VideoSource(CLIP) as src:
        assert src.size == (512, 512) and src.fps == pytest.approx(25) and src.frame_count == 200
        frames = list(src)
    assert len(frames) == 200
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    assert frames[25].time == pytest.approx(1.0)


def test_source_errors(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        VideoSource(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="directory"):
        VideoSource(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        VideoSource(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    with pytest.raises(VideoError, match="text.mp4: not a video"):
        VideoSource(tmp_path / "text.mp4")
    good = write_video(tmp_path / "good.mp4", _frames(30, 320, 240))
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="trunc.mp4"):
        VideoSource(tmp_path / "trunc.mp4")
    zero = cv2.VideoWriter(str(tmp_path / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    zero.release()  # a container with a header and no frames
    with pytest.raises(VideoError, match="zero.mp4"):
        VideoSource(tmp_path / "zero.mp4")


def test_variable_frame_rate_file_gives_its_own_timestamps(tmp_path):
    src = write_video(tmp_path / "cfr.mp4", _frames(30, 64, 48))
    vfr, expected = to_variable_rate(src, tmp_path / "vfr.mp4", fast=15)
    with VideoSource(vfr) as source:
        times = [f.time for f in source]
    assert len(times) == 30
    # The container's time base rounds to 40 ms steps; the 100 ms gaps must survive (index / fps would not).
    np.testing.assert_allclose(times, expected, atol=0.041)
    assert np.diff(times)[15:].mean() == pytest.approx(0.1, abs=0.01)
    with VideoSource(vfr, fps=25) as source:  # an explicit rate overrides the timestamps
        assert [f.time for f in source][-1] == pytest.approx(29 / 25)


def test_no_camera():
    with pytest.raises(VideoError, match="camera 57"):
        VideoSource(57)


def test_sink_is_atomic_and_refuses_overwrite(tmp_path):
    out = tmp_path / "out.mp4"
    sink = VideoSink(out, 25.0, (64, 48))
    for f in _frames(6):
        sink.write(f)
    sink.write(np.zeros((100, 100, 3), np.uint8))  # other sizes are resized
    assert not out.exists()  # still writing to a hidden temp file
    sink.close()
    sink.close()  # idempotent
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left
    with pytest.raises(OutputError, match="already exists"):
        VideoSink(out, 25.0, (64, 48))
    VideoSink(out, 25.0, (64, 48), overwrite=True).close()
    with pytest.raises(OutputError, match="unsupported output extension"):
        VideoSink(tmp_path / "x.gif", 25.0, (64, 48))
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "no" / "dir" / "x.mp4")
    with pytest.raises(OutputError, match="directory"):
        check_output_path(tmp_path)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")
def test_output_on_a_virtual_file_system_is_refused_for_what_it_is():
    # As root /proc is writable and shows 0 bytes free: the reason is the file system, not a full disk.
    with pytest.raises(OutputError, match="not on a disk|not writable") as err:
        check_output_path("/proc/landmarks.mp4")
    assert "almost full" not in str(err.value)


def _face(track_id, n=68, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    cov = np.tile(np.array([[4.0, 1.0], [1.0, 2.0]], np.float32), (n, 1, 1))
    return Face(track_id, np.array([*pts.min(0), *pts.max(0)], np.float32), 0.8, pts, pts + 1, cov)


def test_csv_writer_streams(tmp_path):
    path = tmp_path / "lm.csv"
    w = open_landmark_writer(path, 68, "300w68", 25.0)
    faces = [_face(0, seed=1), _face(3, seed=2)]
    w.write(0, 0.0, faces)
    w.write(1, 0.04, [])
    w.write(2, 0.08, faces[:1])
    partial = read_landmarks_csv(path)  # readable while still open: flushed per frame
    assert list(partial["frame"]) == [0, 0, 2] and list(partial["track_id"]) == [0, 3, 0]
    w.close()
    d = read_landmarks_csv(path)
    np.testing.assert_allclose(d["landmarks"][1], faces[1].landmarks, atol=1e-3)
    np.testing.assert_allclose(d["covariance"][0], faces[0].covariance, rtol=1e-4)
    np.testing.assert_allclose(d["box"][0], faces[0].box, atol=1e-3)


def test_json_writer_is_valid_after_every_frame(tmp_path):
    path = tmp_path / "lm.json"
    w = open_landmark_writer(path, 68, "300w68", 25.0)
    for i in range(4):
        w.write(i, i / 25, [_face(0, seed=i)] if i != 2 else [])
        doc = json.loads(path.read_text())  # a complete document at every point
        assert len(doc["frames"]) == i + 1
    w.close()
    doc = json.loads(path.read_text())
    assert doc["scheme"] == "300w68" and doc["num_points"] == 68
    assert [len(f["faces"]) for f in doc["frames"]] == [1, 1, 0, 1]
    np.testing.assert_allclose(doc["frames"][3]["faces"][0]["landmarks"], _face(0, seed=3).landmarks, atol=1e-3)


def test_npz_writer(tmp_path):
    path = tmp_path / "lm.npz"
    w = open_landmark_writer(path, 68, "300w68", 30.0)
    w.write(0, 0.0, [_face(0), _face(1, seed=5)])
    w.write(1, 1 / 30, [])
    w.write(2, 2 / 30, [_face(0, seed=7)])
    assert not path.exists()
    w.close()
    d = np.load(path)
    assert int(d["frame_count"]) == 3 and str(d["scheme"]) == "300w68"
    assert list(d["frame"]) == [0, 0, 2] and list(d["track_id"]) == [0, 1, 0]
    assert d["landmarks"].shape == (3, 68, 2) and d["covariance"].shape == (3, 68, 2, 2)
    np.testing.assert_allclose(d["raw_landmarks"][2], _face(0, seed=7).raw_landmarks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.npz"]  # spool cleaned up


def test_landmark_writer_errors(tmp_path):
    with pytest.raises(OutputError, match="unsupported landmarks format"):
        open_landmark_writer(tmp_path / "x.txt", 68, "300w68", 25)
    (tmp_path / "x.csv").write_text("keep me")
    with pytest.raises(OutputError, match="already exists"):
        open_landmark_writer(tmp_path / "x.csv", 68, "300w68", 25)
    assert (tmp_path / "x.csv").read_text() == "keep me"


def jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``image`` (as stored) with an EXIF APP1 segment holding only the Orientation tag (0x0112)."""
    ok, enc = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd
    data = enc.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]  # right after SOI


@pytest.mark.parametrize("orientation, turn", [(6, cv2.ROTATE_90_CLOCKWISE), (8, cv2.ROTATE_90_COUNTERCLOCKWISE),
                                               (3, cv2.ROTATE_180)])
def test_read_image_applies_the_exif_orientation(tmp_path, orientation, turn):
    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:12, :12] = 255
    stored[30:, 50:] = (0, 0, 255)
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_orientation(stored, orientation))
    shown = read_image(path)
    assert shown.shape == cv2.rotate(stored, turn).shape
    assert np.abs(shown.astype(int) - cv2.rotate(stored, turn)).mean() < 3


def test_image_command_gives_landmarks_of_an_exif_rotated_photo_in_display_coordinates(tmp_path, face_photo):
    from test_cli import run

    img, pts, box = face_photo  # upright photo with its ground-truth 68 points
    path = tmp_path / "sideways.jpg"  # stored turned a quarter to the left, shown upright (EXIF 6)
    path.write_bytes(jpeg_with_orientation(cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    r = run("image", path, "--max-faces", "1")
    assert r.exit_code == 0, r.stderr
    faces = json.loads(r.stdout)["faces"]
    assert len(faces) == 1
    err = np.linalg.norm(np.array(faces[0]["landmarks"]) - pts, axis=1)
    assert np.median(err) < 0.05 * (box[2] - box[0])  # the ground truth of the upright photo


def test_parquet_without_pyarrow_is_a_missing_dependency(tmp_path, monkeypatch):
    """The CLI's up-front check and the SDK writer both say what to install, as one MissingDependency."""
    from star_track.errors import MissingDependency
    from star_track.io.landmarks import check_landmarks_path

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    for call in (lambda: check_landmarks_path(tmp_path / "x.parquet"),
                 lambda: open_landmark_writer(tmp_path / "x.parquet", 68, "300w68", 25)):
        with pytest.raises(MissingDependency, match=r'x.parquet: .parquet needs pyarrow: pip install "star-track\[parquet\]"'):
            call()
    assert not list(tmp_path.iterdir())


def test_output_problems_are_output_errors_not_video_errors(tmp_path):
    """OutputError is beside VideoError: an unusable output name or a closed sink is never a 'bad video'."""
    from star_track.io.images import check_image_output

    with pytest.raises(OutputError, match="unsupported image extension") as e:
        check_image_output(tmp_path / "x.xyz")
    assert not isinstance(e.value, VideoError)
    sink = VideoSink(tmp_path / "o.mp4", 10, (32, 32))
    sink.close()
    with pytest.raises(OutputError, match="sink is closed"):
        sink.write(np.zeros((32, 32, 3), np.uint8))
