"""The real entry point in a subprocess (issue 15): signals in every phase, native logs behind --verbose,
truncated files. Signals are sent by the process to itself at a fixed point (no timing)."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_cli import face_video, run  # noqa: F401 (fixture)


def run_main(args, hook: str = "", timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``star-track ARGS`` through the console script's entry point, after running the Python ``hook``."""
    code = textwrap.dedent(hook) + "\nfrom star_track.cli.entry import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


SIGNAL_DURING_LOAD = """
import os, signal
import star_track.tracking.tracker as t
_init = t.Tracker.__init__
def init(self, *a, **k):
    _init(self, *a, **k)
    os.kill(os.getpid(), signal.{sig})  # while the command is still setting up
t.Tracker.__init__ = init
"""


@pytest.mark.parametrize("sig,code,word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_signal_during_start_up_is_one_line_and_the_right_code(tmp_path, face_video, model_path, sig, code,
                                                               word):
    r = run_main(["video", face_video, "-l", tmp_path / "o.csv", "-m", model_path, "--no-progress"],
                 SIGNAL_DURING_LOAD.format(sig=sig))
    assert r.returncode == code, (r.returncode, r.stderr)
    assert len(lines(r.stderr)) == 1 and word in r.stderr, r.stderr


SECOND_SIGINT = """
import atexit, os, signal
import star_track.tracking.tracker as t
_track = t.Tracker.track
def track(self, frame, ts=None):
    if self._frame_index == 3:
        os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: finish the frame, stop
    return _track(self, frame, ts)
t.Tracker.track = track
atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))  # second Ctrl-C: after the stop message
"""


def test_second_ctrl_c_after_the_stop_message_keeps_exit_130(tmp_path, face_video, model_path):
    out = tmp_path / "o.csv"
    r = run_main(["video", face_video, "-l", out, "-m", model_path, "--no-progress"], SECOND_SIGINT)
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert lines(r.stderr) == [ln for ln in lines(r.stderr) if "SIGINT: stopped after 4 frames" in ln], r.stderr
    assert len(lines(r.stderr)) == 1


@pytest.fixture(scope="module")
def very_wide_video(tmp_path_factory):
    frames = [np.full((64, 10000, 3), 40 * i, np.uint8) for i in range(2)]
    path = tmp_path_factory.mktemp("wide") / "wide.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (10000, 64))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def test_native_log_lines_only_with_verbose(tmp_path, very_wide_video, model_path):
    # MPEG-4 Part 2 refuses frames wider than 8191 px (H.264 takes them): FFmpeg explains, we say one line
    args = ["video", very_wide_video, "-o", tmp_path / "o.mp4", "--codec", "mpeg4", "-m", model_path,
            "--no-progress"]
    r = run_main(args)
    assert r.returncode == 1 and len(lines(r.stderr)) == 1, r.stderr
    assert "o.mp4" in r.stderr and "star-track: error:" in r.stderr
    verbose = run_main(["--verbose", *args])
    assert verbose.returncode == 1 and len(lines(verbose.stderr)) > 1, verbose.stderr  # FFmpeg/OpenCV speak


def test_usage_error_through_the_entry_point_is_one_line():
    r = run_main(["video", "x.mp4", "-l", "o.csv", "--max-faces", "0"])
    assert r.returncode == 2 and len(lines(r.stderr)) == 1 and "--max-faces" in r.stderr, r.stderr


def test_a_truncated_faststart_mp4_warns_and_keeps_its_frames(tmp_path, model_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    full = tmp_path / "full.mp4"
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-frames:v", "200", "-c:v", "mpeg4", "-q:v", "3", "-movflags", "+faststart", str(full)],
                   check=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    lm = tmp_path / "o.json"
    r = run("video", cut, "-l", lm, "-m", model_path, "--no-progress")
    assert r.exit_code == 0, r.stderr
    warning = [ln for ln in lines(r.stderr) if "ended early" in ln]
    assert len(warning) == 1 and "of the 200 frames" in warning[0], r.stderr
    import json

    n = len(json.loads(lm.read_text())["frames"])
    assert 50 < n < 200 and f"read {n} of the 200" in warning[0]


def test_the_entry_point_installs_its_handlers_before_any_heavy_import():
    """Everything imported before the handlers is a window in which Ctrl-C is Python's traceback: the console
    script's module imports neither typer nor numpy/OpenCV/mediapipe, and the package imports lazily."""
    code = ("import sys, star_track.cli.entry; "
            "print(sorted(m for m in ('typer', 'numpy', 'cv2', 'mediapipe') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
    assert 'star-track = "star_track.cli.entry:main"' in (Path(__file__).parents[1] / "pyproject.toml").read_text()


SIGNAL_BEFORE_THE_BOUNDARY = """
import os, signal
import star_track.run.signals as signals
_init = signals.StopFlag.__init__
def init(self, *args, **kwargs):  # inside the command, before its error boundary: typer would swallow a
    _init(self, *args, **kwargs)  # KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGTERM)
signals.StopFlag.__init__ = init
"""


def test_sigterm_while_typer_runs_the_command_keeps_its_code_and_message(tmp_path, face_video, model_path):
    r = run_main(["video", face_video, "-l", tmp_path / "o.csv", "-m", model_path], SIGNAL_BEFORE_THE_BOUNDARY)
    assert r.returncode == 143 and lines(r.stderr) == ["star-track: terminated"], (r.returncode, r.stderr)


def test_a_signal_the_parent_ignores_stays_ignored(tmp_path, face_video, model_path):
    """nohup / a shell's background job start star-track with SIGINT ignored: it must not stop the run."""
    r = run_main(["video", face_video, "-l", tmp_path / "o.csv", "-m", model_path, "--no-progress"],
                 SIGNAL_DURING_LOAD.format(sig="SIGINT"),
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert r.returncode == 0 and "wrote 20 frames" in r.stdout, (r.returncode, r.stderr)


def test_landmarks_to_a_pipe_its_reader_closes_stop_quietly(tmp_path, face_video, model_path):
    """`star-track video x -l - | head -1`: once the reader is gone the run stops without an error line or a
    traceback, exit 0 (like reading a file only partly); an annotated video being written is finished with the
    frames it has, and nothing is left behind."""
    code = "from star_track.cli.entry import main\nmain()\n"
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-c", code, "video", str(face_video), "-l", "-", "-o", str(out),
                             "-m", str(model_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = proc.stdout.readline()  # the reader takes the header line and goes away, like `head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert header.startswith("frame,time,track_id")
    assert "Traceback" not in err and "error" not in err.lower() and "Broken pipe" not in err, err
    assert "stdout was closed by its reader" in err  # the video is shorter than the input: say why
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial or claim file left
    if out.exists():  # it holds the frames written before the reader left (none when it left at once)
        cap = cv2.VideoCapture(str(out))
        assert cap.isOpened() and cap.read()[0]


@pytest.mark.parametrize("display", [None, ":99"])  # unset, and set to a display nobody serves
def test_webcam_without_a_display_is_one_error_line_not_a_qt_abort(display):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    if display:
        env["DISPLAY"] = display
    r = run_main(["webcam"], env=env)
    assert r.returncode == 1, r.stderr
    assert len(lines(r.stderr)) == 1 and "no display" in r.stderr
