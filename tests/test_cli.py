"""CLI: commands, one-line errors without tracebacks, output checks, signals, and bounded memory."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import disk_full_at, signal_mid_run, to_variable_rate, write_video
from star_track.cli.app import app
from star_track.io.landmarks import read_landmarks_csv
from test_tracker import affine_path, tile_faces

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles, code=1):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for n in needles:
        assert str(n) in lines[0], lines[0]


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, face_photo) -> Path:
    """20 frames, 320x240, 25 fps: a real WFLW face moving along a known affine path."""
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=20, size=(320, 240), face_px=90)
    return write_video(tmp_path_factory.mktemp("v") / "face.mp4", frames, fps=25)


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("video", "webcam", "image", "info", "models"):
        assert cmd in r.stdout
    r = run("video", "--help")
    assert r.exit_code == 0 and "--landmarks-out" in r.stdout and "--smoothing" in r.stdout


@pytest.mark.parametrize("fmt", ["csv", "json", "npz"])
def test_video_end_to_end(tmp_path, face_video, model_path, fmt):
    out, lm = tmp_path / "out.mp4", tmp_path / f"lm.{fmt}"
    r = run("video", face_video, "--out", out, "--landmarks-out", lm, "--model", model_path, "--ellipses")
    assert r.exit_code == 0, r.stderr
    assert "wrote 20 frames" in r.stdout and "faces in 20 of them" in r.stdout and not r.stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)
    assert frame_count(out) == 20
    if fmt == "csv":
        d = read_landmarks_csv(lm)
        frames, ids = d["frame"], d["track_id"]
    elif fmt == "json":
        doc = json.loads(lm.read_text())
        assert len(doc["frames"]) == 20
        frames = np.array([f["frame"] for f in doc["frames"] for _ in f["faces"]])
        ids = np.array([x["track_id"] for f in doc["frames"] for x in f["faces"]])
    else:
        d = np.load(lm)
        assert int(d["frame_count"]) == 20
        frames, ids = d["frame"], d["track_id"]
    assert list(frames) == list(range(20))  # one record per frame and face
    assert set(ids) == {0}
    # drawing changed the frames (annotations), --no-draw does not
    out2 = tmp_path / "plain.mp4"
    assert run("video", face_video, "-o", out2, "-m", model_path, "--no-draw", "-s", "none").exit_code == 0
    a, b = cv2.VideoCapture(str(out)).read()[1], cv2.VideoCapture(str(out2)).read()[1]
    orig = cv2.VideoCapture(str(face_video)).read()[1]
    assert np.abs(a.astype(int) - orig).mean() > np.abs(b.astype(int) - orig).mean()


def test_input_errors(tmp_path, model_path):
    out = tmp_path / "o.mp4"
    assert_one_line_error(run("video", tmp_path / "missing.mp4", "-o", out, "-m", model_path),
                          "missing.mp4", "no such file")
    assert_one_line_error(run("video", tmp_path, "-o", out, "-m", model_path), str(tmp_path), "directory")
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 50)
    assert_one_line_error(run("video", text, "-o", out, "-m", model_path), "notes.mp4", "not a video")
    good = write_video(tmp_path / "g.mp4", [np.full((120, 160, 3), i, np.uint8) for i in range(40)])
    data = good.read_bytes()
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(data[: len(data) * 2 // 3])
    assert_one_line_error(run("video", trunc, "-o", out, "-m", model_path), "trunc.mp4")
    assert not out.exists()
    r = run("video", good, "-m", model_path)
    assert_one_line_error(r, "--landmarks-out", code=2)


def test_output_errors(tmp_path, face_video, model_path):
    assert_one_line_error(run("video", face_video, "-o", tmp_path / "nodir" / "o.mp4", "-m", model_path),
                          "nodir", "does not exist")
    assert_one_line_error(run("video", face_video, "-o", "/proc/star-track-test.mp4", "-m", model_path),
                          "star-track-test.mp4")
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"precious")
    assert_one_line_error(run("video", face_video, "-o", existing, "-m", model_path), "exists.mp4",
                          "already exists")
    assert existing.read_bytes() == b"precious"
    lm = tmp_path / "exists.csv"
    lm.write_text("precious")
    t0 = time.perf_counter()
    r = run("video", face_video, "-o", tmp_path / "new.mp4", "-l", lm, "-m", model_path)
    assert_one_line_error(r, "exists.csv", "already exists")
    assert time.perf_counter() - t0 < 2 and not (tmp_path / "new.mp4").exists()  # refused before processing
    assert_one_line_error(run("video", face_video, "-o", tmp_path / "x.gif", "-m", model_path), "x.gif")
    assert_one_line_error(run("video", face_video, "-l", tmp_path / "x.txt", "-m", model_path), "x.txt")
    r = run("video", face_video, "-o", existing, "-m", model_path, "--overwrite")
    assert r.exit_code == 0 and frame_count(existing) == 20


def test_model_errors(tmp_path, face_video, wrong_count_model, standin_model):
    out = tmp_path / "o.mp4"
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(standin_model.read_bytes()[:3000])
    assert_one_line_error(run("video", face_video, "-o", out, "-m", bad), "corrupt.onnx")
    assert_one_line_error(run("video", face_video, "-o", out, "-m", wrong_count_model), "wrongcount.onnx",
                          "landmarks")
    assert_one_line_error(run("video", face_video, "-o", out, "-m", tmp_path / "nope.onnx"), "nope.onnx")
    assert_one_line_error(run("video", face_video, "-o", out, "-m", standin_model, "-e", "bogus"), "bogus")
    assert_one_line_error(run("video", face_video, "-o", out, "-m", standin_model, "--detector",
                              tmp_path / "det.tflite"), "det.tflite")
    assert not out.exists()


def test_zero_faces_video(tmp_path, model_path):
    grad = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    frames = [cv2.cvtColor(np.roll(grad, 4 * i, axis=1), cv2.COLOR_GRAY2BGR) for i in range(15)]
    src = write_video(tmp_path / "gradient.mp4", frames, fps=15)
    out, lm, lmj = tmp_path / "o.mp4", tmp_path / "o.csv", tmp_path / "o.json"
    r = run("video", src, "-o", out, "-l", lm, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    assert frame_count(out) == 15
    assert len(lm.read_text().strip().splitlines()) == 1  # header only: no faces
    assert "no face found in any frame" in r.stderr and "faces in 0 of them" in r.stdout
    assert run("video", src, "-l", lmj, "-m", model_path).exit_code == 0
    doc = json.loads(lmj.read_text())
    assert len(doc["frames"]) == 15 and all(f["faces"] == [] for f in doc["frames"])


@pytest.mark.parametrize("w,h", [(16, 16), (3840, 2160)])
def test_extreme_frame_sizes(tmp_path, model_path, face_photo, w, h):
    img, _, box = face_photo
    k = 0.4 * h / (box[3] - box[1])
    m = np.array([[k, 0, w / 2 - k * (box[0] + box[2]) / 2], [0, k, h / 2 - k * (box[1] + box[3]) / 2]])
    frames = [cv2.warpAffine(img, m, (w, h)) for _ in range(2)]
    src = write_video(tmp_path / "src.mp4", frames, fps=10)
    out, lm = tmp_path / "o.mp4", tmp_path / "o.csv"
    r = run("video", src, "-o", out, "-l", lm, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    assert frame_count(out) == 2
    if w > 100:
        d = read_landmarks_csv(lm)
        assert list(d["frame"]) == [0, 1]  # the face in the 4K frame is tracked on both frames
        assert np.abs(d["landmarks"].reshape(-1, 2).mean(0) - (w / 2, h / 2)).max() < 0.1 * h
    elif len(lm.read_text().splitlines()) > 1:  # a 16x16 frame may still hold a (tiny) detectable face
        d = read_landmarks_csv(lm)
        assert len(d["frame"]) <= 2 and np.isfinite(d["landmarks"]).all()


@pytest.mark.parametrize("mode", ["gray", "rgba"])
def test_image_command_gray_and_rgba(tmp_path, face_photo, model_path, mode):
    img = face_photo[0]
    conv = cv2.COLOR_BGR2GRAY if mode == "gray" else cv2.COLOR_BGR2BGRA
    src = tmp_path / f"in_{mode}.png"
    cv2.imwrite(str(src), cv2.cvtColor(img, conv))
    out, lm = tmp_path / "o.png", tmp_path / "o.json"
    r = run("image", src, "-o", out, "-l", lm, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    assert "1 face(s)" in r.stdout
    assert cv2.imread(str(out)).shape == img.shape
    assert len(json.loads(lm.read_text())["faces"]) == 1


def test_image_command_warns_about_a_jpeg_cut_short(tmp_path, face_photo, model_path):
    """A truncated JPEG decodes with its lower part gray: one warning line, not silence. A whole JPEG, also one
    with data after its end marker (phone photos carry such trailers), gives none."""
    data = cv2.imencode(".jpg", face_photo[0])[1].tobytes()
    for name, content, warned in (("cut.jpg", data[: len(data) // 2], True), ("whole.jpg", data, False),
                                  ("trailer.jpg", data + bytes(range(256)) * 8, False)):
        src = tmp_path / name
        src.write_bytes(content)
        r = run("image", src, "-l", tmp_path / f"{name}.json", "-m", model_path)
        assert r.exit_code == 0, r.stderr
        warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
        assert warnings == ([f"star-track: warning: {src}: the file ends early (truncated or damaged?): its lower "
                             "part decoded as gray"] if warned else []), r.stderr


def test_image_many_faces(tmp_path, face_photo, model_path):
    img, _, box = face_photo
    src = tmp_path / "grid.jpg"
    cv2.imwrite(str(src), tile_faces(img, box))
    lm = tmp_path / "grid.json"
    r = run("image", src, "-l", lm, "-m", model_path, "--max-faces", 30, "--detector", "full")
    assert r.exit_code == 0, r.stderr
    faces = json.loads(lm.read_text())["faces"]
    assert len(faces) >= 16 and len({f["track_id"] for f in faces}) == len(faces)
    assert_one_line_error(run("image", tmp_path / "none.png", "-l", tmp_path / "n.json", "-m", model_path),
                          "none.png")
    txt = tmp_path / "fake.png"
    txt.write_text("nope")
    assert_one_line_error(run("image", txt, "-l", tmp_path / "n.json", "-m", model_path), "fake.png")


def test_info_and_models_list(tmp_path, monkeypatch, standin_model):
    r = run("info", "-m", standin_model)
    assert r.exit_code == 0, r.stderr
    assert "engine: onnxruntime[CPUExecutionProvider]" in r.stdout and "scheme: 300w68" in r.stdout
    assert "detector full" in r.stdout and "[ok]" in r.stdout
    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mymodel.onnx").write_bytes(standin_model.read_bytes())
    (tmp_path / "models" / "broken.onnx").write_bytes(b"not a model")
    (tmp_path / "models" / "star98-fast.onnx").write_bytes(standin_model.read_bytes())  # a bundled name
    r = run("models", "list")
    assert r.exit_code == 0 and "mymodel" in r.stdout
    rows = {ln.split("\t")[0]: ln.split("\t") for ln in r.stdout.splitlines()}
    assert rows["mymodel"][2] == "68 points (300w68)" and rows["star98-fast"][2] == "98 points (wflw98)"
    assert rows["broken"][2].startswith("unreadable")
    from star_track.model.registry import DEFAULT_BUNDLED

    lines = {ln.split("\t")[0] for ln in r.stdout.splitlines()}
    assert f"{DEFAULT_BUNDLED} (default)" in lines and "mymodel" in lines  # exactly one default, marked
    hidden = [ln for ln in r.stdout.splitlines() if "\tcache\t" in ln and ln.startswith("star98-fast")]
    assert len(hidden) == 1 and "hidden by the bundled model" in hidden[0]  # --model star98-fast loads the bundled one


def test_webcam_without_camera(model_path, monkeypatch):
    # a display is checked first (test_cli_process covers its absence); pretend one so the camera check runs
    monkeypatch.setattr("star_track.io.display.require_display", lambda *a, **k: None)
    assert_one_line_error(run("webcam", "--camera", 57, "-m", model_path), "camera 57")


# -- subprocess: signals and memory --------------------------------------------------------------------

def _cli_cmd(*args):
    return [sys.executable, "-c", "from star_track.cli.entry import main; main()", *map(str, args)]


@pytest.fixture(scope="module")
def long_face_video(tmp_path_factory, face_photo) -> Path:
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=50, size=(320, 240), face_px=90)
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", frames * 8, fps=25)  # 400 frames


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_leaves_playable_outputs(tmp_path, long_face_video, model_path, sig, code):
    out, lm = tmp_path / "o.mp4", tmp_path / "o.json"
    returncode, stdout, stderr = signal_mid_run(
        _cli_cmd("video", long_face_video, "-o", out, "-l", lm, "-m", model_path), lm, 20000, sig, 60)
    assert returncode == code, (stdout, stderr)
    assert "Traceback" not in stderr
    doc = json.loads(lm.read_text())  # complete JSON document
    n = len(doc["frames"])
    assert 0 < n < 400
    assert f"wrote {n} frames" in stderr
    assert [f["frame"] for f in doc["frames"]] == list(range(n))
    assert frame_count(out) == n  # playable and consistent with the landmarks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json", "o.mp4"]  # no temp files left


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_memory_is_bounded_on_a_long_video(tmp_path, face_photo, model_path):
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=100, size=(160, 120), face_px=60)
    # 3000 frames: the face moves, leaves (blank stretches) and comes back, so tracks start and end
    blank = [np.zeros_like(frames[0])] * 20
    src = write_video(tmp_path / "long.mp4", (frames + blank) * 25, fps=30)
    out, lm = tmp_path / "o.mp4", tmp_path / "o.csv"
    proc = subprocess.Popen(_cli_cmd("video", src, "-o", out, "-l", lm, "-m", model_path, "--detect-every", 5),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        samples.append(_rss_mb(proc.pid))
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "wrote 3000 frames" in stdout
    samples = [s for s in samples if s > 0]
    assert len(samples) >= 10
    warm = max(samples[len(samples) // 5: len(samples) * 2 // 5])  # after start-up
    late = max(samples[len(samples) * 4 // 5:])
    assert late - warm < 40, (warm, late)


def test_webcam_disconnect_ends_cleanly(monkeypatch, face_video, model_path):
    """A camera that stops delivering frames mid-stream ends the session normally (exit 0)."""
    import star_track.io.source as video_mod

    real = video_mod.VideoSource

    class FlakyCamera(real):
        def __init__(self, source, fps=None):
            super().__init__(face_video)  # delivers 20 frames, then reads fail like an unplugged camera
            self.is_camera, self.name = True, f"camera {source}"

    shown = []
    monkeypatch.setattr("star_track.io.display.require_display", lambda *a, **k: None)  # headless here
    monkeypatch.setattr(video_mod, "VideoSource", FlakyCamera)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: -1)
    r = run("webcam", "--camera", 3, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    assert "processed 20 frames from camera 3" in r.stdout and len(shown) == 20


def test_models_import_installs_a_named_model(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from star_track.nn.checkpoint import save_checkpoint
    from star_track.nn.network import NetworkConfig, StarNet

    torch.manual_seed(0)
    ckpt = save_checkpoint(StarNet(NetworkConfig("cofw29", 1, 16, 3, 128)), tmp_path / "mine.pt")
    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path / "cache"))
    r = run("models", "import", ckpt, "--name", "cofw-test")
    assert r.exit_code == 0, r.stderr
    installed = tmp_path / "cache" / "models" / "cofw-test.onnx"
    assert installed.is_file() and installed.with_suffix(".md").is_file()
    r = run("info", "-m", "cofw-test")
    assert r.exit_code == 0 and "scheme: cofw29" in r.stdout
    # a second import under the same name is refused with one line (the CLI's option named), a missing file is
    # named, and an ONNX file is pointed to --model instead of being read as a checkpoint
    assert_one_line_error(run("models", "import", ckpt, "--name", "cofw-test"), "already exists", "--overwrite")
    assert_one_line_error(run("models", "import", tmp_path / "nope.pkl"), "nope.pkl")
    assert_one_line_error(run("models", "import", installed), "already an ONNX model", "--model")
    # the imported model is uncalibrated: the SDK's warning is one command-line line, naming it as installed
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 128, np.uint8))
    r = run("image", photo, "-m", "cofw-test", "-l", tmp_path / "p.json")
    assert r.exit_code == 0, r.stderr
    assert [ln for ln in r.stderr.splitlines() if "uncertainty calibration" in ln] == [
        ln for ln in r.stderr.splitlines() if ln.startswith("star-track: warning: model 'cofw-test' has no")], r.stderr
    assert "star-track: warning: model 'cofw-test'" in r.stderr and "UncalibratedUncertaintyWarning" not in r.stderr


def test_bench_engines_prints_a_table(model_path):
    r = run("bench", "engines", "-m", model_path, "--engines", "onnxruntime,tensorrt", "--batches", "1,2",
            "--repeats", "2")
    assert r.exit_code == 0, r.stderr
    assert "onnxruntime" in r.stdout and "tensorrt" in r.stdout  # tensorrt: listed as unavailable here
    assert_one_line_error(run("bench", "engines", "-m", model_path, "--batches", "x"), "--batches", code=2)


def test_image_flip_test_default_is_at_least_as_accurate_on_a_real_face(tmp_path, face_photo):
    img, gt, _ = face_photo
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), img)
    iod = np.linalg.norm(gt[36] - gt[45])
    nme = {}
    for flag in ((), ("--no-flip-test",)):  # photo mode flips by default
        lm = tmp_path / f"lm{len(flag)}.json"
        r = run("image", src, "-l", lm, *flag)  # bundled model
        assert r.exit_code == 0, r.stderr
        pts = np.array(json.loads(lm.read_text())["faces"][0]["landmarks"])
        nme[not flag] = np.linalg.norm(pts - gt, axis=1).mean() / iod
    assert nme[True] < 0.08 and nme[True] <= nme[False] + 0.005 and nme[True] != nme[False]


def test_variable_frame_rate_video_keeps_every_frame_and_its_time(tmp_path, face_video, model_path):
    vfr, expected = to_variable_rate(face_video, tmp_path / "vfr.mp4", fast=10)
    out, lm = tmp_path / "out.mp4", tmp_path / "lm.json"
    r = run("video", vfr, "-o", out, "-l", lm, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    frames = json.loads(lm.read_text())["frames"]
    assert len(frames) == 20 == frame_count(out)
    np.testing.assert_allclose([f["time"] for f in frames], expected, atol=0.041)
    assert sum(len(f["faces"]) > 0 for f in frames) >= 18


def test_full_disk_is_refused_before_processing(tmp_path, face_video, model_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    out = tmp_path / "o.mp4"
    assert_one_line_error(run("video", face_video, "-o", out, "-m", model_path), "o.mp4", "disk almost full")
    assert not out.exists()


def test_disk_filling_up_mid_run_is_one_line_and_keeps_what_was_written(tmp_path, face_video, model_path,
                                                                        monkeypatch):
    disk_full_at(monkeypatch, 8)
    out, lm = tmp_path / "o.mp4", tmp_path / "o.csv"
    assert_one_line_error(run("video", face_video, "-o", out, "-l", lm, "-m", model_path), "No space left")
    assert len(lm.read_text().splitlines()) == 1 + 8  # header + the 8 frames before the failure
    assert frame_count(out) == 8  # the video was closed and is playable
