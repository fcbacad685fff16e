"""The tracker options shared by video, webcam and image (declared once in star_track.cli.options)."""
from __future__ import annotations

import cv2

from star_track.cli.options import TrackerOptions
from test_cli import face_video, run  # noqa: F401 (fixture)


def test_every_tracking_command_takes_the_shared_options_and_threads():
    for command in ("video", "webcam", "image"):
        text = run(command, "--help").stdout
        for flag in ("--model", "--engine", "--max-faces", "--detector", "--flip-test", "--threads"):
            assert flag in text, (command, flag)


def test_threads_reach_the_tracker(tmp_path, face_video, face_photo, model_path, monkeypatch):
    import star_track.tracking.tracker as tracker_mod

    seen = []
    real = tracker_mod.Tracker.__init__

    def init(self, *a, **k):
        seen.append(k.get("threads"))
        real(self, *a, **k)

    monkeypatch.setattr(tracker_mod.Tracker, "__init__", init)
    r = run("video", face_video, "-l", tmp_path / "o.csv", "-m", model_path, "--threads", "2", "--no-progress")
    assert r.exit_code == 0, r.stderr
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), face_photo[0])
    assert run("image", img, "-m", model_path, "--threads", "1").exit_code == 0
    assert seen == [2, 1]
    assert TrackerOptions().threads is None
