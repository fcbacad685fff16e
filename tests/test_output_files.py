"""Output files (issue 15): disk full mid-write, exclusive names, symlinks, stale partials of killed runs."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import star_track.landmark_io as landmark_io
import star_track.video as video_mod
from star_track.landmark_io import open_landmark_writer, read_landmarks_csv
from star_track.output_files import OutputClaim, clean_stale_partials
from star_track.video import VideoError, VideoSink
from test_cli import assert_one_line_error, face_video, frame_count, run  # noqa: F401 (fixture)


def _fail_on_call(monkeypatch, n_ok: int):
    """Make landmark_io's low-level write succeed ``n_ok`` times, then write half the bytes and hit ENOSPC."""
    real = os.write
    calls = [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] > n_ok:
            real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(landmark_io, "_os_write", write)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_disk_full_in_the_middle_of_a_write_keeps_whole_frames(tmp_path, face_video, model_path, monkeypatch,
                                                               fmt):
    _fail_on_call(monkeypatch, 1 + 6)  # header + 6 frames, then the 7th frame's write is cut in half
    out, lm = tmp_path / "o.mp4", tmp_path / f"o.{fmt}"
    r = run("video", face_video, "-o", out, "-l", lm, "-m", model_path)
    assert_one_line_error(r, f"o.{fmt}", "No space left on device")
    if fmt == "csv":
        frames = list(read_landmarks_csv(lm)["frame"])  # parses: no half row
    else:
        frames = [f["frame"] for f in json.loads(lm.read_text())["frames"]]  # valid JSON
    assert frames == list(range(6))
    assert frame_count(out) == 6  # the video ends on the same frame


def test_disk_nearly_full_during_a_run_stops_while_the_video_can_be_finished(tmp_path, face_video, model_path,
                                                                            monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    out, lm = tmp_path / "o.mp4", tmp_path / "o.csv"

    def disk_usage(p):  # the disk "fills up" once 5 frames are in the landmarks file
        rows = len(lm.read_text().splitlines()) - 1 if lm.exists() else 0
        return usage(10**9, 0, 10**9 if rows < 5 else 2**20)

    monkeypatch.setattr(video_mod.shutil, "disk_usage", disk_usage)
    assert_one_line_error(run("video", face_video, "-o", out, "-l", lm, "-m", model_path), "No space left")
    assert frame_count(out) == 5 and list(read_landmarks_csv(lm)["frame"]) == list(range(5))


def test_an_output_name_is_claimed_by_exactly_one_writer(tmp_path):
    out = tmp_path / "same.avi"
    first = VideoSink(out, 10, (32, 32))
    with pytest.raises(VideoError, match="same.avi"):
        VideoSink(out, 10, (32, 32))  # a concurrent run on the same name
    first.write(np.zeros((32, 32, 3), np.uint8))
    first.close()
    assert frame_count(out) == 1
    with pytest.raises(VideoError, match="already exists"):
        VideoSink(out, 10, (32, 32))
    npz = tmp_path / "same.npz"
    w = open_landmark_writer(npz, 68, "300w68", 10.0)
    with pytest.raises(VideoError, match="same.npz"):
        open_landmark_writer(npz, 68, "300w68", 10.0)
    w.close()
    # a file that appears between the up-front checks and the open is not truncated
    csv_path = tmp_path / "late.csv"
    csv_path.write_text("precious")
    with pytest.raises(VideoError, match="already exists"):
        landmark_io.CsvLandmarkWriter(csv_path, 68, "300w68", 10.0)
    assert csv_path.read_text() == "precious"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no claims or partials left


def _open(kind: str, path: Path, overwrite: bool):
    if kind == "video":
        return VideoSink(path, 10, (32, 32), overwrite=overwrite)
    return open_landmark_writer(path, 68, "300w68", 10.0, overwrite=overwrite)


@pytest.mark.parametrize("kind,name", [("video", "o.avi"), ("landmarks", "o.csv"), ("landmarks", "o.json"),
                                       ("landmarks", "o.npz")])
@pytest.mark.parametrize("link", ["to-file", "dangling", "loop"])
def test_a_symlink_output_is_taken_without_overwrite_and_replaced_not_followed_with_it(tmp_path, kind, name,
                                                                                        link):
    target = tmp_path / "target.bin"
    if link == "to-file":
        target.write_bytes(b"precious")
    out = tmp_path / name
    os.symlink(out if link == "loop" else target, out)
    with pytest.raises(VideoError, match="already exists"):
        _open(kind, out, overwrite=False)
    assert out.is_symlink()
    w = _open(kind, out, overwrite=True)
    if kind == "video":
        w.write(np.zeros((32, 32, 3), np.uint8))
    w.close()
    assert not out.is_symlink() and out.is_file() and out.stat().st_size > 0
    if link == "to-file":
        assert target.read_bytes() == b"precious"  # never written through the link


def test_partials_of_killed_runs_are_removed_by_the_next_run_in_that_folder(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)  # that process has exited
    stale = [tmp_path / f".o.partial-{pid}.mp4", tmp_path / f".o.mp4.claim-{pid}",
             tmp_path / f".lm.partial-{pid}.npz"]
    for p in stale:
        p.write_bytes(b"x")
    spool = tmp_path / f".star-track-{pid}-abc123"
    spool.mkdir()
    (spool / "frame").write_bytes(b"x")
    alive = tmp_path / ".o.partial-1.mp4"  # pid 1 exists: its files are left alone
    alive.write_bytes(b"x")
    unrelated = tmp_path / ".hidden-notes"
    unrelated.write_bytes(b"x")
    sink = VideoSink(tmp_path / "next.avi", 10, (32, 32))
    sink.close()
    assert not any(p.exists() for p in (*stale, spool))
    assert alive.exists() and unrelated.exists()
    assert clean_stale_partials(tmp_path) == []


def test_claim_release_is_idempotent(tmp_path):
    c = OutputClaim(tmp_path / "x.mp4", overwrite=False)
    c.release()
    c.release()
    OutputClaim(tmp_path / "x.mp4", overwrite=False).release()  # free again


def test_every_output_is_closed_even_when_one_fails_to_close(tmp_path, face_video, model_path, monkeypatch):
    def fail_close(self):
        raise VideoError(f"{self.path}: simulated failure while finishing")

    monkeypatch.setattr(VideoSink, "close", fail_close)
    out, lm = tmp_path / "o.mp4", tmp_path / "o.npz"  # .npz: written only when closed
    assert_one_line_error(run("video", face_video, "-o", out, "-l", lm, "-m", model_path), "simulated failure")
    assert int(np.load(lm)["frame_count"]) == 20  # the landmarks file was still finished


def test_image_output_follows_the_same_name_rules(tmp_path, face_photo, model_path):
    import cv2

    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_photo[0])
    target = tmp_path / "target.png"
    target.write_bytes(b"precious")
    link = tmp_path / "link.png"
    os.symlink(target, link)
    assert_one_line_error(run("image", src, "-o", link, "-m", model_path), "link.png", "already exists")
    r = run("image", src, "-o", link, "-m", model_path, "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert not link.is_symlink() and cv2.imread(str(link)) is not None
    assert target.read_bytes() == b"precious"  # not written through the link
