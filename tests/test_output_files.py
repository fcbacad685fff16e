"""Output files (issue 15): disk full mid-write, exclusive names, symlinks, stale partials of killed runs."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import star_track.io.landmarks.base as landmark_base
import star_track.io.sink as sink_mod
from star_track.errors import OutputError, VideoError
from star_track.io.claims import OutputClaim, clean_stale_partials
from star_track.io.landmarks import CsvLandmarkWriter, open_landmark_writer, read_landmarks_csv
from star_track.io.sink import VideoSink
from test_cli import assert_one_line_error, face_video, frame_count, long_face_video, run  # noqa: F401 (fixture)


def _fail_on_call(monkeypatch, n_ok: int):
    """Make the landmark writers' low-level write succeed ``n_ok`` times, then write half the bytes and hit ENOSPC."""
    real = os.write
    calls = [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] > n_ok:
            real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(landmark_base, "_os_write", write)


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

    monkeypatch.setattr(sink_mod.shutil, "disk_usage", disk_usage)
    assert_one_line_error(run("video", face_video, "-o", out, "-l", lm, "-m", model_path), "No space left")
    assert frame_count(out) == 5 and list(read_landmarks_csv(lm)["frame"]) == list(range(5))


def test_an_output_name_is_claimed_by_exactly_one_writer(tmp_path):
    out = tmp_path / "same.avi"
    first = VideoSink(out, 10, (32, 32))
    with pytest.raises(OutputError, match="same.avi"):
        VideoSink(out, 10, (32, 32))  # a concurrent run on the same name
    first.write(np.zeros((32, 32, 3), np.uint8))
    first.close()
    assert frame_count(out) == 1
    with pytest.raises(OutputError, match="already exists"):
        VideoSink(out, 10, (32, 32))
    npz = tmp_path / "same.npz"
    w = open_landmark_writer(npz, 68, "300w68", 10.0)
    with pytest.raises(OutputError, match="same.npz"):
        open_landmark_writer(npz, 68, "300w68", 10.0)
    w.close()
    # a file that appears between the up-front checks and the open is not truncated
    csv_path = tmp_path / "late.csv"
    csv_path.write_text("precious")
    with pytest.raises(OutputError, match="already exists"):
        CsvLandmarkWriter(csv_path, 68, "300w68", 10.0)
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
    with pytest.raises(OutputError, match="already exists"):
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


# -- issue 30: a second signal while the outputs close, a disk that really fills up, sink arguments -----------

_SLOW_CLOSE = ("import sys, time, pathlib, star_track.io.av_video as a\n"
               "real, marker = a.AvWriter.close, pathlib.Path(sys.argv.pop(1))\n"
               "def slow(self, **kw):\n"
               "    marker.touch()  # tell the test the video is closing\n"
               "    time.sleep(0.6)\n"
               "    return real(self, **kw)\n"
               "a.AvWriter.close = slow\n"
               "from star_track.cli.entry import main; main()\n")


@pytest.mark.parametrize("lm_name,second,delay,code", [("o.csv", signal.SIGINT, 0.05, 130),
                                                       ("o.npz", signal.SIGTERM, 0.3, 143)])
def test_a_second_signal_while_the_video_closes_still_leaves_every_output(tmp_path, long_face_video, model_path,
                                                                         lm_name, second, delay, code):
    """Issue 30 #1: Ctrl-C, then Ctrl-C or SIGTERM 0.05-0.3 s later while the video is being finished."""
    work, marker = tmp_path / "out", tmp_path / "closing"
    work.mkdir()
    out, lm = work / "o.mp4", work / lm_name
    cmd = [sys.executable, "-c", _SLOW_CLOSE, str(marker), "video", str(long_face_video), "-o", str(out), "-l",
           str(lm), "-m", str(model_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120

    def progressed() -> bool:  # some frames are in the landmarks (the CSV, or the .npz's spool)
        files = [lm] if lm_name.endswith(".csv") else list(work.glob(".star-track-*/landmarks"))
        return any(f.exists() and f.stat().st_size > 2000 for f in files)

    while time.time() < deadline and proc.poll() is None and not progressed():
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    while time.time() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.01)
    time.sleep(delay)
    assert proc.poll() is None, proc.communicate()  # still closing: the second signal lands there
    proc.send_signal(second)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in work.iterdir()) == sorted(["o.mp4", lm_name])  # no partial or claim files
    n = (int(np.load(lm)["frame_count"]) if lm_name.endswith(".npz")
         else len(set(read_landmarks_csv(lm)["frame"])))
    assert 0 < n < 400 and f"wrote {n} frames" in stderr, stderr
    assert frame_count(out) >= n > 0  # the video holds every frame (frames without a face have no CSV row)


def test_sdk_close_delivers_a_signal_only_once_the_video_is_in_place(tmp_path, monkeypatch):
    import star_track.io.av_video as av_mod

    real = av_mod.AvWriter.close

    def interrupted_close(self, **kw):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the container is being finished
        return real(self, **kw)

    monkeypatch.setattr(av_mod.AvWriter, "close", interrupted_close)
    out = tmp_path / "o.mp4"
    sink = VideoSink(out, 10, (32, 32))
    for _ in range(3):
        sink.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(KeyboardInterrupt):  # still delivered: the default handler runs afterwards
        sink.close()
    assert frame_count(out) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]


def _in_small_disk(tmp_path: Path, script: str, **env: str) -> Path:
    """Run ``script`` (sh) in a user+mount namespace where ``$FULL`` is a fresh 48 MiB tmpfs; what it writes to
    ``$RES`` comes back. Skips where unprivileged namespaces are not allowed."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"],
                                                         capture_output=True).returncode:
        pytest.skip("unprivileged user/mount namespaces (unshare -rm) are not available here")
    full, res = tmp_path / "full", tmp_path / "res"
    full.mkdir()
    res.mkdir()
    env = {**os.environ, **env, "FULL": str(full), "RES": str(res), "PY": sys.executable}
    subprocess.run(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=48m tmpfs "$FULL" && {script}'],
                   env=env, check=True, timeout=300)
    return res


_FILL_MID_RUN = """
"$PY" -c 'from star_track.cli.entry import main; main()' video "$IN" $OUTS -m "$MODEL" --no-progress 2>"$RES/stderr" &
pid=$!
i=0
while [ "$(cat "$FULL"/$WATCH 2>/dev/null | wc -c)" -lt 20000 ]; do  # $WATCH: a glob
  sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && break
done
dd if=/dev/zero of="$FULL/fill" bs=64k 2>/dev/null
wait $pid; echo $? > "$RES/rc"
for f in "$FULL"/o.*; do cp "$f" "$RES/"; done
ls -A "$FULL" > "$RES/listing"
"""


def test_a_disk_that_really_fills_up_keeps_the_video_up_to_the_last_frame(tmp_path, long_face_video, model_path):
    """Issue 30 #7: another program fills the disk mid-run; the video still ends on the CSV's last frame."""
    res = _in_small_disk(tmp_path, _FILL_MID_RUN.replace("$OUTS", '-o "$FULL/o.mp4" -l "$FULL/o.csv"'),
                         IN=str(long_face_video), MODEL=str(model_path), WATCH="o.csv")
    stderr = (res / "stderr").read_text()
    assert (res / "rc").read_text().strip() == "1", stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0], stderr
    assert sorted((res / "listing").read_text().split()) == ["fill", "o.csv", "o.mp4"]  # nothing hidden left
    frames = sorted(set(read_landmarks_csv(res / "o.csv")["frame"]))
    assert 0 < len(frames) < 400
    assert frame_count(res / "o.mp4") == frames[-1] + 1  # the video ends on the landmarks' last frame


@pytest.mark.parametrize("name", ["o.npz", "o.parquet"])
def test_a_full_disk_with_npz_or_parquet_names_the_output_and_leaves_nothing_hidden(tmp_path, long_face_video,
                                                                                   model_path, name):
    """Issue 30 #8: the message names the landmarks file and says the disk is full; no partial/claim/spool."""
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    # Progress shows in the .npz's spool; a .parquet is written at the end, so a video runs beside it
    watch = ".star-track-*/landmarks" if name.endswith(".npz") else ".o.partial-*.mp4"
    outs = f'-l "$FULL/{name}"' + ("" if name.endswith(".npz") else ' -o "$FULL/o.mp4"')
    script = _FILL_MID_RUN.replace("$OUTS", outs)
    res = _in_small_disk(tmp_path, script, IN=str(long_face_video), MODEL=str(model_path), WATCH=watch)
    stderr = (res / "stderr").read_text()
    assert (res / "rc").read_text().strip() == "1", stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0], stderr
    assert str(long_face_video.name) not in lines[0] and "closed file" not in lines[0]
    listing = (res / "listing").read_text().split()
    assert not [p for p in listing if p.startswith(".")], listing  # no partial, claim or spool
    if name not in listing:  # it could not be written: the message says so
        assert name in lines[0]
    elif name.endswith(".npz"):  # else it holds the frames before the disk filled up
        assert 0 < int(np.load(res / name)["frame_count"]) < 400
    else:
        import pyarrow.parquet as pq

        assert 0 < int(pq.read_metadata(res / name).metadata[b"frame_count"]) < 400


@pytest.mark.parametrize("fps", [1e-6, 0.0, float("nan")])
def test_a_sink_frame_rate_out_of_range_is_a_value_error_naming_it(tmp_path, fps):
    with pytest.raises(ValueError, match="fps="):
        VideoSink(tmp_path / "o.mp4", fps, (32, 32))
    assert not list(tmp_path.iterdir())  # nothing claimed


def test_the_lowest_sink_frame_rate_still_gives_a_video(tmp_path):
    out = tmp_path / "slow.mp4"
    with VideoSink(out, sink_mod.MIN_SINK_FPS, (32, 32)) as sink:
        for _ in range(2):
            sink.write(np.zeros((32, 32, 3), np.uint8))
    assert frame_count(out) == 2


@pytest.mark.parametrize("t", [float("inf"), float("nan"), -1.0, "soon"])
def test_a_sink_frame_time_out_of_range_is_a_value_error_naming_it(tmp_path, t):
    with VideoSink(tmp_path / "o.mp4", 10, (32, 32)) as sink:
        sink.write(np.zeros((32, 32, 3), np.uint8), 0.0)
        with pytest.raises(ValueError, match="time="):
            sink.write(np.zeros((32, 32, 3), np.uint8), t)
        sink.write(np.zeros((32, 32, 3), np.uint8), 0.1)  # the sink is still usable
    assert frame_count(tmp_path / "o.mp4") == 2
