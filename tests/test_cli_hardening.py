"""CLI hardening (issue 15): usage errors, cameras, outputs validated before writing, paths named as given."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from star_track.cli.app import run_cli
from star_track import VideoError, VideoSource
from test_cli import assert_one_line_error, run


def one_line(capsys, code, *needles):
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return code


@pytest.fixture
def photo(tmp_path):
    """A small readable image (no face needed: these errors come before any model is loaded)."""
    p = tmp_path / "f.png"
    cv2.imwrite(str(p), np.full((32, 32, 3), 128, np.uint8))
    return p


@pytest.mark.parametrize("args,needle", [
    (["--max-faces", "0"], "--max-faces"),
    (["--detect-every", "-1"], "--detect-every"),
    (["--smoothing", "bogus"], "bogus"),
    (["--no-such-option"], "--no-such-option"),
])
def test_usage_errors_are_one_line_with_exit_2(capsys, tmp_path, args, needle):
    code = run_cli(["video", str(tmp_path / "in.mp4"), "-l", str(tmp_path / "o.csv"), *args])
    assert one_line(capsys, code, needle, "star-track: error:") == 2


@pytest.fixture
def any_display(monkeypatch):
    """These tests are about the camera argument: let them pass the display check on a headless machine."""
    monkeypatch.setattr("star_track.io.display.require_display", lambda *a, **k: None)


def test_negative_camera_index_is_refused_before_opencv(capsys, any_display):
    with pytest.raises(VideoError, match="camera -1"):
        VideoSource(-1)  # cv2.VideoCapture(-1) segfaults in this OpenCV build
    with pytest.raises(VideoError, match="camera -1"):
        VideoSource("-1")  # also as text (it is not a file name)
    assert one_line(capsys, run_cli(["webcam", "--camera", "-2"]), "camera -2", "0 or more") == 1


@pytest.mark.parametrize("camera,needle", [("-1", "0 or more"), ("/dev/video9", "no such device"),
                                           ("rtsp://127.0.0.1:1/x", "cannot open the stream")])
def test_bad_cameras_end_with_one_line_and_exit_1(capsys, camera, needle, any_display):
    """Issue 12: an index, a device path or a stream URL; each failure is one line naming it, exit 1."""
    assert one_line(capsys, run_cli(["webcam", "--camera", camera]), camera, needle) == 1


def test_image_never_overwrites_its_input(photo):
    before = photo.read_bytes()
    assert_one_line_error(run("image", photo, "-o", photo, "--overwrite"), "f.png", "overwrite the input")
    assert photo.read_bytes() == before


@pytest.mark.parametrize("bad_out", ["img.xyz", "noext", "/dev/null"])
def test_image_outputs_are_all_validated_before_any_is_written(tmp_path, photo, bad_out):
    out = bad_out if bad_out.startswith("/") else tmp_path / bad_out
    lm = tmp_path / "img.json"
    r = run("image", photo, "-o", out, "-l", lm, "--overwrite")
    assert_one_line_error(r, str(out))
    assert "cv2" not in r.stderr and "OpenCV(" not in r.stderr
    assert not lm.exists()  # a rerun is not refused with "already exists"


def test_paths_are_reported_as_given(tmp_path):
    r = run("video", "http://127.0.0.1:1/y.mp4", "-l", tmp_path / "o.csv")  # streams are read (issue 12)
    assert_one_line_error(r, "http://127.0.0.1:1/y.mp4", "cannot open the stream")
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = run("video", "in.mp4", "-l", afile / "o.csv")
    assert_one_line_error(r, "is not a folder")
    assert "does not exist" not in r.stderr


def test_bench_batches_must_be_positive(model_path):
    for bad in ("0", "1,-2", ","):
        assert_one_line_error(run("bench", "engines", "-m", model_path, "--batches", bad), "--batches", code=2)


@pytest.mark.parametrize("spell", ["file://{}", "file:{}", "file://localhost{}"])
def test_a_file_url_input_is_never_overwritten(tmp_path, spell):
    """Issue 30 #2: the input given as a file: URL is the same file as the output name."""
    src = tmp_path / "in.mp4"
    src.write_bytes(b"precious video")
    r = run("video", spell.format(src), "-o", src, "--overwrite")
    assert_one_line_error(r, "in.mp4", "overwrite the input")
    assert src.read_bytes() == b"precious video"


def test_a_hard_link_of_the_input_is_never_overwritten(tmp_path):
    """Issue 30 #3: another name of the same file (same inode) is the input too."""
    src = tmp_path / "in.mp4"
    src.write_bytes(b"precious video")
    link = tmp_path / "h.csv"
    import os

    os.link(src, link)
    assert_one_line_error(run("video", src, "-l", link, "--overwrite"), "h.csv", "overwrite the input")
    assert src.read_bytes() == b"precious video"


@pytest.mark.parametrize("args,needle", [(["--crf", "20"], "--crf"), (["--preset", "fast"], "--preset"),
                                         (["--codec", "hevc", "--crf", "20"], "--codec and --crf")])
def test_encoder_settings_without_an_output_video_are_a_usage_error(tmp_path, args, needle):
    """Issue 30 #20: they would be silently ignored; one usage line instead (exit 2)."""
    r = run("video", tmp_path / "in.mp4", "-l", tmp_path / "o.csv", *args)
    assert_one_line_error(r, needle, "--out", code=2)
    r = run("batch", tmp_path, "--out-dir", tmp_path / "out", *args)
    assert_one_line_error(r, needle, "--video", code=2)


def test_batch_passes_the_annotated_videos_encoding_on(tmp_path, monkeypatch):
    """``batch --preset`` exists as on ``video`` (README) and reaches the encoder options."""
    import star_track.run.batch as batch_module

    seen = {}

    def fake(inputs, out_dir, **kw):
        seen.update(kw["video_options"])
        return batch_module.BatchRows()

    monkeypatch.setattr(batch_module, "run_batch", fake)
    r = run("batch", tmp_path, "--out-dir", tmp_path / "out", "--video", "--codec", "hevc", "--crf", "30",
            "--preset", "veryfast")
    assert r.exit_code == 0, r.stderr
    assert (seen["codec"], seen["crf"], seen["preset"]) == ("hevc", 30, "veryfast")


@pytest.mark.parametrize("args,needle", [(["--crf", "99"], "--crf 99"), (["--preset", "bogus"], "--preset bogus"),
                                         (["--codec", "av1", "--preset", "veryslow"], "--preset veryslow")])
def test_encoder_settings_the_codec_does_not_take_are_a_usage_error_before_any_work(tmp_path, args, needle):
    """Wrong usage, as --focal -5 is: exit 2, and before the input is even opened (it does not exist here)."""
    r = run("video", tmp_path / "in.mp4", "--out", tmp_path / "o.mp4", *args)
    assert_one_line_error(r, needle, code=2)
    r = run("batch", tmp_path, "--out-dir", tmp_path / "out", "--video", *args)
    assert_one_line_error(r, needle, code=2)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "out").exists()
