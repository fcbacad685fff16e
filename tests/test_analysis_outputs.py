"""Issue 28 outputs: the face-state columns in every landmark format, read back; strict JSON; old files still
read; the run summary counts blinks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from star_track.analysis.pose import Camera, Pose, rotation_from_euler
from star_track.io.landmarks import ANALYSIS_COLUMNS, LandmarkFileError, open_landmark_writer, read_landmarks
from star_track.tracking.face import Face

FORMATS = (".csv", ".json", ".npz", ".parquet")


def _face(track_id: int, seed: int, pose: bool = True, blink: bool = False) -> Face:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 100, (68, 2)).astype(np.float32)
    cov = np.tile(np.array([[4.0, 1.0], [1.0, 2.0]], np.float32), (68, 1, 1))
    f = Face(track_id, np.array([*pts.min(0), *pts.max(0)], np.float32), 0.8, pts, pts, cov, expected_error=0.04)
    yaw, pitch, roll = rng.uniform(-40, 40, 3)
    if pose:
        f.pose = Pose(yaw, pitch, roll, 1.5, 2.5, 0.5, rotation_from_euler(yaw, pitch, roll), np.array([0, 0, 50.0]),
                      camera=Camera(640, 640, 320, 240))
    f.eye_open, f.mouth_open, f.blink = (float(rng.uniform(0, 1.3)), float(rng.uniform(0, 1.3))), 0.2 + seed, blink
    return f


def _frames() -> list:
    return [(0, 0.0, [_face(0, 1), _face(2, 2, pose=False)]), (1, 0.04, []), (2, 0.08, [_face(0, 3, blink=True)])]


def _expected(faces: list[Face]) -> dict[str, np.ndarray]:
    nan = float("nan")
    rows = [[f.pose.yaw, f.pose.pitch, f.pose.roll, f.pose.yaw_sd, f.pose.pitch_sd, f.pose.roll_sd] if f.pose
            else [nan] * 6 for f in faces]
    rows = [r + [*f.eye_open, f.mouth_open, float(f.blink)] for r, f in zip(rows, faces)]
    return dict(zip(ANALYSIS_COLUMNS, np.array(rows, np.float64).T))


@pytest.mark.parametrize("ext", FORMATS)
def test_face_state_columns_round_trip(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"lm{ext}"
    with open_landmark_writer(path, 68, "300w68", 25.0) as w:
        for frame in _frames():
            w.write(*frame)
    got = read_landmarks(path)
    want = _expected([f for _, _, faces in _frames() for f in faces])
    assert list(got["frame"]) == [0, 0, 2] and list(got["track_id"]) == [0, 2, 0]
    for c in ANALYSIS_COLUMNS:
        np.testing.assert_allclose(got[c], want[c], rtol=1e-4, atol=1e-4, err_msg=c)
    assert np.isnan(got["yaw"][1]) and got["blink"].tolist() == [0.0, 0.0, 1.0]


def test_json_with_unknown_state_is_strict_and_names_the_columns(tmp_path):
    f = _face(0, 1, pose=False)
    f.eye_open, f.mouth_open = (float("nan"), float("nan")), float("nan")  # analysis off
    with open_landmark_writer(tmp_path / "lm.json", 68, "300w68", 25.0) as w:
        w.write(0, 0.0, [f])
    text = (tmp_path / "lm.json").read_text()

    def strict(token):
        raise AssertionError(f"not strict JSON: {token}")

    face = json.loads(text, parse_constant=strict)["frames"][0]["faces"][0]
    assert all(face[c] is None for c in ANALYSIS_COLUMNS)  # blink unknown too when there is no openness


def test_a_file_without_the_columns_still_reads(tmp_path):
    path = tmp_path / "old.csv"
    with open_landmark_writer(path, 68, "300w68", 25.0) as w:
        w.write(0, 0.0, [_face(0, 1)])
    header, row = path.read_text().splitlines()
    n = len(ANALYSIS_COLUMNS)
    path.write_text(",".join(header.split(",")[:-n]) + "\n" + ",".join(row.split(",")[:-n]) + "\n")
    got = read_landmarks(path)
    assert got["landmarks"].shape == (1, 68, 2) and "yaw" not in got


def test_a_foreign_file_is_one_clear_error(tmp_path):
    (tmp_path / "other.csv").write_text("a,b,c\n1,2,3\n")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    for name in ("other.csv", "other.json"):
        with pytest.raises(LandmarkFileError, match="not a star-track landmarks"):
            read_landmarks(tmp_path / name)


def test_batch_table_counts_blinks_per_track():
    from rich.console import Console

    from star_track.run.batch import summary_table

    rows = [{"input": "a.mp4", "status": "ok", "frames": 10, "frames_with_faces": 10, "seconds": 1.0,
             "blinks": {"0": 3, "2": 1}},
            {"input": "b.mp4", "status": "ok", "frames": 10, "frames_with_faces": 10, "seconds": 1.0, "blinks": {}},
            {"input": "old.mp4", "status": "ok", "frames": 10, "frames_with_faces": 10, "seconds": 1.0}]
    console = Console(width=160, record=True)
    console.print(summary_table(rows))
    lines = console.export_text().splitlines()
    assert "blinks" in "".join(lines)
    a, b = (next(ln for ln in lines if name in ln) for name in ("a.mp4", "b.mp4"))
    assert "#0 3, #2 1" in a and " 0 " in b
