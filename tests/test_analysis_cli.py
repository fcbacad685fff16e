"""Issue 28 wiring: Face.pose / openness from the Tracker on a real video, --pose drawing, --focal/--camera,
`star-track plot`, and issue 25 item 3: photo mode defaults to the most precise bundled model."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA
from star_track.cli.app import app, run_cli
from star_track.cli.options import TrackerOptions
from star_track.draw import draw_faces
from star_track.io.landmarks import read_landmarks
from star_track.model import BUNDLED_DIR
from star_track.model.registry import DEFAULT_BUNDLED, PHOTO_BUNDLED

VIDEO = DATA / "videos" / "RD_Radio2_000.mp4"  # one mostly frontal face, 200 frames
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r, code: int) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first 40 frames of a real clip (skips without the shared data)."""
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not found")
    from star_track.io.source import VideoSource

    with VideoSource(str(VIDEO)) as src:
        frames = [(vf.image.copy(), vf.time) for _, vf in zip(range(40), src)]
        fps = src.fps
    return frames, fps


def test_tracker_faces_carry_a_plausible_pose_and_openness(clip):
    from star_track import Tracker

    frames, fps = clip
    with Tracker(fps=fps) as tr:
        faces = [tr.track(img, t) for img, t in frames]
        events = tr.face_state.blinks
        assert all(b.start < b.end for b in events) and len(events) == sum(tr.face_state.blink_counts().values())
        tr.reset()
        assert tr.face_state.blinks == [] and tr.face_state.blink_counts() == {}
    poses = [f[0].pose for f in faces if f and f[0].pose is not None]
    assert len(poses) >= 35
    angles = np.array([p.angles for p in poses])
    assert (np.abs(angles) < [45, 35, 30]).all(), angles.min(0)  # a presenter facing the camera
    sds = np.array([p.angles_sd for p in poses])
    assert (sds > 0).all() and np.median(sds) < 10
    m = poses[-1].matrix
    assert m.shape == (4, 4) and np.allclose(m[3], [0, 0, 0, 1]) and m[2, 3] < 0  # face in front of the camera
    eyes = np.array([f[0].eye_open for f in faces if f])
    assert 0.5 < np.median(eyes) < 2.0 and all(0 <= f[0].mouth_open < 1 for f in faces if f)
    with Tracker(fps=fps, analysis=False) as tr:
        off = tr.track(*frames[0])
    assert off[0].pose is None and np.isnan(off[0].eye_open).all()


def test_sdk_camera_arguments_are_checked():
    from star_track import Tracker

    for bad in ({"camera": (700, 700, 320)}, {"camera": (0, 700, 320, 240)}, {"focal": -1.0}, {"focal": np.nan}):
        with pytest.raises(ValueError, match="focal|camera"):
            Tracker(**bad)


def test_pose_flag_draws_the_head_axes(clip):
    from star_track import Tracker

    frames, fps = clip
    with Tracker(fps=fps) as tr:
        for img, t in frames[:5]:
            faces = tr.track(img, t)
    plain = draw_faces(frames[4][0].copy(), faces, tr.scheme)
    axes = draw_faces(frames[4][0].copy(), faces, tr.scheme, pose=True)
    changed = np.any(plain != axes, axis=2)
    assert changed.sum() > 200
    x1, y1, x2, y2 = faces[0].box  # drawn on the face, not somewhere else
    ys, xs = np.nonzero(changed)
    assert x1 - 40 < np.median(xs) < x2 + 40 and y1 - 40 < np.median(ys) < y2 + 40


def test_bad_camera_options_are_usage_errors(tmp_path, capsys):
    for args in (("--camera", "700,700,320"), ("--camera", "a,b,c,d"), ("--camera", "0,700,320,240"),
                 ("--focal", "0"), ("--focal", "inf")):
        code = run_cli(["video", str(tmp_path / "x.mp4"), "-l", str(tmp_path / "x.csv"), *args])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2 and len(err) == 1 and args[0] in err[0] and "star-track: error:" in err[0], err


def test_video_summary_plot_and_its_errors(tmp_path, clip):
    frames, fps = clip
    src = tmp_path / "clip.mp4"
    h, w = frames[0][0].shape[:2]
    vw = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for img, _ in frames:
        vw.write(img)
    vw.release()
    lm = tmp_path / "run.csv"
    r = run("video", src, "-l", lm, "--no-progress", "--focal", 600)
    assert r.exit_code == 0, r.stderr
    assert np.isfinite(read_landmarks(lm)["yaw"]).mean() > 0.9
    report = tmp_path / "report.png"
    r = run("plot", lm, "--out", report)
    assert r.exit_code == 0, r.stderr
    img = cv2.imread(str(report))
    assert img is not None and img.shape[1] >= 800 and (img < 250).mean() > 0.01  # something drawn
    foreign = tmp_path / "other.csv"
    foreign.write_text("name,value\na,1\n")
    assert "other.csv" in one_error_line(run("plot", foreign, "--out", tmp_path / "o.png"), 1)
    old = tmp_path / "old.csv"
    r = run("video", src, "-l", old, "--no-progress", "--no-analysis", "--smoothing", "face")
    assert r.exit_code == 0, r.stderr
    assert "analysis" in one_error_line(run("plot", old, "--out", tmp_path / "old.png"), 1)
    assert "no such file" in one_error_line(run("plot", tmp_path / "none.csv", "--out", tmp_path / "n.png"), 1)


def _held_out_nme(card: str) -> float:
    return float(re.search(r"300W split: \*\*([\d.]+) %\*\*", card).group(1))


def test_photo_default_is_the_most_precise_bundled_model():
    cards = {p.stem: _held_out_nme(p.read_text()) for p in BUNDLED_DIR.glob("star68-*.md")}
    # (an INT8 body's card quotes its float model's figure: both are the most precise)
    assert cards[PHOTO_BUNDLED] == min(cards.values()) and PHOTO_BUNDLED != DEFAULT_BUNDLED


def test_image_command_uses_the_photo_model_unless_told(tmp_path, face_photo, monkeypatch):
    img, _, _ = face_photo
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), img)
    used = []
    real = TrackerOptions.tracker

    def spy(self, *args, **changes):
        tracker = real(self, *args, **changes)
        used.append((tracker.meta.name, tracker.smoothing))
        return tracker

    monkeypatch.setattr(TrackerOptions, "tracker", spy)
    for extra in ((), ("-m", "default")):
        r = run("image", src, "-l", tmp_path / f"f{len(extra)}.json", *extra)
        assert r.exit_code == 0, r.stderr
    assert used == [(PHOTO_BUNDLED, "none"), (DEFAULT_BUNDLED, "none")]
    faces = read_landmarks(tmp_path / "f0.json")
    assert np.isfinite(faces["yaw"]).all() and faces["blink"].tolist() == [0.0] * len(faces["yaw"])


def test_sdk_photo_tracker_uses_the_photo_model_unless_told(face_photo):
    from star_track import Tracker

    img, gt, _ = face_photo
    with Tracker.for_photos() as photo, Tracker.for_photos("default", flip_test=False) as fast:
        assert photo.smoothing == "none" and photo.engine.name.endswith("+flip")  # photos flip by default
        assert photo.meta.name == PHOTO_BUNDLED and Path(fast.engine.path).stem == DEFAULT_BUNDLED
        faces = photo.detect_image(img)
    best = min(faces, key=lambda f: np.linalg.norm(f.landmarks - gt, axis=1).mean())
    assert best.pose is not None and abs(best.pose.yaw) < 60 and best.blink is False
