"""SDK hardening (issue 15): timestamps, VideoSink arguments and frames, non-finite model output, threads."""
from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest

from star_track import ConcurrentUseError, NonFiniteOutputWarning, Tracker, VideoError, VideoSink, VideoSource
from star_track.engines import create_engine
from test_cli import frame_count, run
from test_tracker import affine_path


@pytest.fixture(scope="module")
def frames(face_photo):
    img, pts, box = face_photo
    return affine_path(img, pts, box, n=6, size=(320, 240), face_px=90)[0]


class ScriptedEngine:
    """Wraps a real engine; ``poison`` turns its outputs into NaN/inf; ``hold`` blocks inside ``infer``."""

    def __init__(self, inner):
        self.inner, self.name, self.meta = inner, inner.name, inner.meta
        self.poison = False
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def infer(self, crops):
        if self.hold is not None:
            self.entered.set()
            assert self.hold.wait(60)
        mean, cov = self.inner.infer(crops)
        if self.poison:
            mean, cov = mean.copy(), cov.copy()
            mean[:, ::2] = np.nan
            cov[:, 1::3] = np.inf
        return mean, cov


@pytest.mark.parametrize("smoothing", ["kalman", "one-euro"])
def test_bad_timestamps_raise_and_never_poison_the_filters(model_path, frames, smoothing):
    with Tracker(model=model_path, smoothing=smoothing) as tr:
        assert len(tr.track(frames[0], 0.0)) == 1
        for bad in (float("nan"), float("inf"), -float("inf"), 1e300, "soon", "1.0"):
            with pytest.raises(ValueError, match="timestamp"):
                tr.track(frames[1], bad)
        for t, f in zip((0.04, 0.0, 0.01, 5000.0, 5000.04), frames[1:]):  # backwards, then a huge jump
            faces = tr.track(f, t)
            assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all(), t
            assert 0 < faces[0].score <= 1


@pytest.mark.parametrize("fps", [float("inf"), float("nan"), 0.0, -5.0, 1e9])
def test_video_sink_rejects_invalid_frame_rates(tmp_path, fps):
    with pytest.raises(VideoError, match="frame rate"):
        VideoSink(tmp_path / "o.avi", fps, (64, 64))
    assert list(tmp_path.iterdir()) == []


def test_video_sink_converts_or_refuses_frames(tmp_path):
    out = tmp_path / "o.avi"
    with VideoSink(out, 10, (64, 48)) as sink:
        sink.write(np.full((48, 64, 4), 200, np.uint8))  # BGRA
        sink.write(np.full((48, 64, 1), 100, np.uint8))  # one channel
        sink.write(np.full((48, 64), 50, np.uint8))
        for bad in (np.zeros((48, 64, 2), np.uint8), np.zeros((48, 64, 3), np.float32), np.zeros((0, 64, 3), np.uint8)):
            with pytest.raises(ValueError, match="frames must"):
                sink.write(bad)
        assert sink.frames_written == 3
    assert frame_count(out) == 3
    first = cv2.VideoCapture(str(out)).read()[1]
    assert abs(int(first.mean()) - 200) < 10  # the BGRA frame's content, not an empty file


def test_nonfinite_model_output_drops_the_face_for_that_frame(model_path, frames):
    eng = ScriptedEngine(create_engine(model_path, "onnxruntime"))
    with Tracker(engine=eng) as tr:
        assert len(tr.track(frames[0])) == 1
        eng.poison = True
        with pytest.warns(NonFiniteOutputWarning):
            assert tr.track(frames[1]) == []
        assert tr.track(frames[2]) == [] and tr.nonfinite_faces >= 2  # warned once, counted each time
        eng.poison = False
        faces = tr.track(frames[3])
        assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()
        assert np.isfinite(faces[0].covariance).all()


def test_cli_with_a_nonfinite_model_writes_valid_files_and_one_warning(tmp_path, model_path, face_photo,
                                                                       monkeypatch):
    import star_track.tracking.tracker as tracker_mod

    def poisoned(model, engine, **kw):
        e = ScriptedEngine(create_engine(model, "onnxruntime"))
        e.poison = True
        return e

    monkeypatch.setattr(tracker_mod, "create_engine", poisoned)
    src, out, lm = tmp_path / "face.png", tmp_path / "o.png", tmp_path / "o.json"
    cv2.imwrite(str(src), face_photo[0])
    r = run("image", src, "-o", out, "-l", lm, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "non-finite" in lines[0], r.stderr

    def strict(token):
        raise AssertionError(f"JSON contains {token}")

    doc = json.loads(lm.read_text(), parse_constant=strict)
    assert doc["faces"] == [] and cv2.imread(str(out)) is not None  # image -l X.json: the stdout document


def test_concurrent_use_of_one_tracker_raises_instead_of_mixing_streams(model_path, frames):
    eng = ScriptedEngine(create_engine(model_path, "onnxruntime"))
    with Tracker(engine=eng) as tr:
        eng.hold = threading.Event()
        results = []
        worker = threading.Thread(target=lambda: results.append(tr.track(frames[0])))
        worker.start()
        assert eng.entered.wait(60)  # the worker is inside track()
        with pytest.raises(ConcurrentUseError, match="another thread"):
            tr.track(frames[1])
        with pytest.raises(ConcurrentUseError):
            tr.detect_image(frames[1])
        eng.hold.set()
        worker.join(60)
        eng.hold = None
        assert len(results) == 1 and len(results[0]) == 1  # the worker's own call completed normally
        assert len(tr.track(frames[1])) == 1  # and the Tracker is usable again


@pytest.mark.parametrize("kwargs, name", [
    ({"max_faces": None}, "max_faces"), ({"max_faces": 2.5}, "max_faces"), ({"max_faces": 0}, "max_faces"),
    ({"fps": float("nan")}, "fps"), ({"fps": float("inf")}, "fps"), ({"fps": -5}, "fps"), ({"fps": "30"}, "fps"),
    ({"detect_every": None}, "detect_every"), ({"refine_steps": -1}, "refine_steps"),
    ({"max_misses": float("nan")}, "max_misses"), ({"redetect_below": float("inf")}, "redetect_below"),
    ({"min_detection_confidence": 2}, "min_detection_confidence"), ({"uncertainty_half": 0}, "uncertainty_half"),
    ({"refine_tolerance": None}, "refine_tolerance"), ({"threads": -1}, "threads"), ({"threads": "4"}, "threads"),
    ({"flip_test": "no"}, "flip_test"), ({"analysis": None}, "analysis"),
])
def test_tracker_arguments_give_a_value_error_naming_them(model_path, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        Tracker(model=model_path, **kwargs)


def test_more_threads_than_cores_are_capped_with_one_warning(model_path, monkeypatch):
    import star_track.tracking.arguments as tracker_module

    monkeypatch.setattr(tracker_module, "usable_cores", lambda: 3)
    with pytest.warns(RuntimeWarning, match="threads=100000 is more than the 3 usable CPU cores: using 3"):
        tr = Tracker(model=model_path, threads=100000, smoothing="none")
    assert tr.engine.threads == 3
    assert Tracker(model=model_path, threads=2, smoothing="none").engine.threads == 2


def test_cli_threads_above_the_cores_is_one_note(tmp_path, frames, model_path):
    from star_track.tracking.arguments import usable_cores

    cv2.imwrite(str(tmp_path / "f.png"), frames[0])
    r = run("image", tmp_path / "f.png", "-m", model_path, "--threads", 100000)
    assert r.exit_code == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if "--threads" in ln]
    assert notes == [f"star-track: note: --threads 100000 is more than the {usable_cores()} usable CPU cores: "
                     f"using {usable_cores()}"], r.stderr


@pytest.mark.parametrize("fps", [-5, 0, float("nan"), float("inf"), 1e9, "fast"])
def test_video_source_refuses_an_invalid_frame_rate(tmp_path, frames, fps):
    from conftest import write_video

    clip = write_video(tmp_path / "c.mp4", frames)
    with pytest.raises(ValueError, match="^fps must be"):
        VideoSource(clip, fps=fps)
    with VideoSource(clip, fps=12.5) as src:  # a valid override: times index / fps, never negative
        assert [f.time for f in src] == [i / 12.5 for i in range(len(frames))]


def test_frames_over_the_detector_limit_are_downscaled_for_detection_only(face_photo, monkeypatch):
    """mediapipe crashes on images over 2 GiB (a 27000x27000 frame): such frames are detected downscaled. The
    limit is lowered here so that an ordinary photo crosses it."""
    import star_track.detection.blazeface as bf
    from star_track.detection.blazeface import FaceDetector

    img, pts, box = face_photo
    with FaceDetector("full", mode="image") as det:
        full = det.detect(img)
        seen = []
        real = bf._aligned_rgb
        monkeypatch.setattr(bf, "_aligned_rgb", lambda f: seen.append(f.shape) or real(f))
        monkeypatch.setattr(bf, "MAX_DETECT_PIXELS", img.shape[0] * img.shape[1] // 9)
        small = det.detect(img)
    assert seen and seen[0][0] * seen[0][1] <= bf.MAX_DETECT_PIXELS  # mediapipe got the small image
    assert len(full) >= 1 and len(small) >= 1
    side = box[2] - box[0]
    assert np.abs(small[0].box - full[0].box).max() < 0.1 * side  # boxes in the frame's own pixels
    assert np.abs(small[0].keypoints - full[0].keypoints).max() < 0.1 * side
    with Tracker(smoothing="none") as tr:  # the whole pipeline on a frame over the limit: right landmarks
        faces = tr.track(img)
    assert len(faces) >= 1
    err = min(np.median(np.linalg.norm(f.landmarks - pts, axis=1)) for f in faces)
    assert err < 0.05 * side
