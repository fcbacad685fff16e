"""The examples run as documented."""
import subprocess
import sys
from pathlib import Path

import cv2

from conftest import write_video

REPO = Path(__file__).resolve().parents[1]


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_uncertainty_example_lists_the_most_uncertain_landmarks(tmp_path, face_photo):
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), face_photo[0])
    r = _run("examples/uncertainty.py", img)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "face 0: score" in r.stdout and r.stdout.count("landmark") == 5


def test_track_video_example_writes_video_and_csv(tmp_path, face_photo):
    import numpy as np

    from test_tracker import affine_path

    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=12, size=(320, 240), face_px=90)
    src = write_video(tmp_path / "in.mp4", frames)
    out, csv = tmp_path / "out.mp4", tmp_path / "lm.csv"
    r = _run("examples/track_video.py", src, out, csv)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    rows = csv.read_text().splitlines()
    assert len(rows) == 13 and np.isfinite([float(v) for v in rows[1].split(",")[1:]]).all()
