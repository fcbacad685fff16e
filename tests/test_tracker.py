"""Tracker on real face photos: a known affine path, stable ids, input validation, odd frame sizes, many faces."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import _export
from star_track import Face, Tracker
from star_track.errors import ModelError
from star_track.tracking.face import as_bgr
from star_track.uncertainty import landmark_score


def affine_path(img: np.ndarray, pts: np.ndarray, box: np.ndarray, n: int = 24, size=(640, 480),
                face_px: float = 170.0):
    """Frames with the face moving along a known path (translation + roll + zoom) and its true points."""
    w, h = size
    k0 = face_px / (box[2] - box[0])
    c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    frames, truth = [], []
    for i in range(n):
        ph = 2 * np.pi * i / n
        k = k0 * (1 + 0.15 * np.sin(ph))
        a = np.deg2rad(12 * np.sin(ph))
        centre = np.array([w / 2 + 120 * np.sin(ph), h / 2 + 50 * np.sin(2 * ph)])
        lin = k * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        m = np.hstack([lin, (centre - lin @ c)[:, None]])
        frames.append(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))
        truth.append(pts @ lin.T + m[:, 2])
    return frames, np.array(truth)


@pytest.fixture(scope="module")
def tracker(model_path):
    with Tracker(model=model_path, max_faces=4) as t:
        yield t


def test_follows_a_known_affine_path(model_path, face_photo):
    img, pts, box = face_photo
    frames, truth = affine_path(img, pts, box)
    with Tracker(model=model_path, smoothing="kalman") as tr:
        results = [tr.track(f) for f in frames]
    assert all(len(r) == 1 for r in results), [len(r) for r in results]
    assert len({r[0].track_id for r in results}) == 1  # one stable id along the whole path
    face_size = np.ptp(truth[0], axis=0).max()
    for r, t in zip(results, truth):
        f = r[0]
        assert isinstance(f, Face)
        assert f.landmarks.shape == f.raw_landmarks.shape == (68, 2) and f.covariance.shape == (68, 2, 2)
        assert 0.0 <= f.score <= 1.0
        # stand-in weights are random, but the crops follow the face: landmark centre within 20 % of its size
        assert np.linalg.norm(f.raw_landmarks.mean(0) - t.mean(0)) < 0.2 * face_size
        assert np.isfinite(f.covariance).all()
    path = np.array([r[0].raw_landmarks.mean(0) for r in results])
    true_path = truth.mean(1)
    # the measured centre moves with the true centre (correlation of the x motion)
    assert np.corrcoef(path[:, 0], true_path[:, 0])[0, 1] > 0.9


def test_lost_face_is_dropped_and_ids_restart_after_reset(tracker, face_photo):
    tracker.reset()
    img = face_photo[0]
    assert len(tracker.track(img)) == 1
    blank = np.zeros_like(img)
    counts = [len(tracker.track(blank)) for _ in range(2 * tracker.detect_every + 2)]
    assert counts[-1] == 0 and tracker.num_tracks == 0
    first = tracker.track(img)
    assert first and first[0].track_id == 1  # a new face gets a new id
    tracker.reset()
    assert tracker.track(img)[0].track_id == 0


@pytest.mark.parametrize("convert", ["gray2d", "gray3d", "bgra"])
def test_grayscale_and_bgra_frames(tracker, face_photo, convert):
    img = face_photo[0]
    if convert == "gray2d":
        frame = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    elif convert == "gray3d":
        frame = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    else:
        frame = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    tracker.reset()
    faces = tracker.track(frame)
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64, 5), np.uint8), "shape"),
    (np.zeros((0, 64, 3), np.uint8), "empty"),
    ([[0, 1], [2, 3]], "numpy array"),
])
def test_invalid_frames_raise_value_error(tracker, bad, match):
    with pytest.raises(ValueError, match=match):
        tracker.track(bad)


def test_tiny_and_4k_frames(tracker, face_photo):
    tracker.reset()
    assert tracker.track(np.zeros((16, 16, 3), np.uint8)) == []
    img, _, box = face_photo
    k = 700 / (box[2] - box[0])  # a 700-px face in a 3840x2160 frame
    m = np.array([[k, 0, 1900 - k * (box[0] + box[2]) / 2], [0, k, 1080 - k * (box[1] + box[3]) / 2]])
    big = cv2.warpAffine(img, m, (3840, 2160))
    tracker.reset()
    faces = tracker.track(big)
    assert len(faces) == 1
    cx, cy = faces[0].raw_landmarks.mean(0)
    assert abs(cx - 1900) < 350 and abs(cy - 1080) < 350


def test_face_at_the_border(tracker, face_photo):
    img, _, box = face_photo
    # shift the image so that the face's left third is outside the frame
    dx = -(box[0] + (box[2] - box[0]) / 3)
    frame = cv2.warpAffine(img, np.array([[1, 0, dx], [0, 1, 0]], float), (img.shape[1], img.shape[0]))
    tracker.reset()
    for _ in range(3):
        faces = tracker.track(frame)
        for f in faces:
            assert np.isfinite(f.landmarks).all() and np.isfinite(f.covariance).all()
            assert f.box[2] > 0  # overlaps the frame


def tile_faces(img, box, rows=4, cols=5, cell=220):
    c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    side = (box[2] - box[0]) * 1.6
    k = cell / side
    m = np.array([[k, 0, cell / 2 - k * c[0]], [0, k, cell / 2 - k * c[1]]])
    tile = cv2.warpAffine(img, m, (cell, cell))
    return np.vstack([np.hstack([tile] * cols)] * rows)


def test_many_faces_respect_max_faces_and_do_not_grow(model_path, face_photo):
    img, _, box = face_photo
    grid = tile_faces(img, box)  # 20 faces
    with Tracker(model=model_path, max_faces=8, detector="full") as tr:
        counts = []
        for _ in range(4):
            faces = tr.track(grid)
            counts.append(len(faces))
            assert len({f.track_id for f in faces}) == len(faces)
        assert counts == [8, 8, 8, 8]  # 20 faces visible: exactly max_faces tracked, every frame
        assert tr.num_tracks <= 8
    with Tracker(model=model_path, max_faces=32, detector="full") as tr:
        still = tr.detect_image(grid)
    assert len(still) >= 16  # (nearly) all of the 20 faces are found and landmarked in one batched call


def test_detect_image_and_no_smoothing(model_path, face_photo):
    img = face_photo[0]
    with Tracker(model=model_path, smoothing="none") as tr:
        still = tr.detect_image(img)
        assert len(still) == 1
        np.testing.assert_array_equal(still[0].landmarks, still[0].raw_landmarks)
        a = tr.track(img)
        b = tr.track(img)
        np.testing.assert_array_equal(b[0].landmarks, b[0].raw_landmarks)
        assert a[0].track_id == b[0].track_id


def test_output_scheme_68_from_98_point_model(tmp_path_factory, face_photo):
    model98 = _export(tmp_path_factory.mktemp("m98"), "standin98", scheme="wflw98")
    with Tracker(model=model98, output_scheme="68") as tr:
        assert tr.scheme.num_points == 68 and tr.model_scheme.num_points == 98
        faces = tr.track(face_photo[0])
    assert faces[0].landmarks.shape == (68, 2) and faces[0].covariance.shape == (68, 2, 2)
    with Tracker(model=model98) as tr:
        full = tr.track(face_photo[0])[0]
    assert full.landmarks.shape == (98, 2)
    with Tracker(model=model98, output_scheme="98") as tr:
        assert tr.scheme.num_points == 98
    with pytest.raises(ValueError, match="output_scheme"):
        Tracker(model=model98, output_scheme="29")


def test_asking_a_68_point_model_for_98_points_names_the_way_out(model_path):
    with pytest.raises(ModelError, match="outputs 68 points.*star98-fast"):
        Tracker(model=model_path, output_scheme="98")


def test_constructor_errors(model_path, tmp_path):
    with pytest.raises(ModelError):
        Tracker(model=tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="max_faces"):
        Tracker(model=model_path, max_faces=0)
    with pytest.raises(ValueError, match="unknown smoothing"):
        Tracker(model=model_path, smoothing="median")


def test_landmark_score_orders_sharp_above_diffuse():
    sharp = np.tile(np.eye(2) * 0.02**2, (1, 68, 1, 1))
    diffuse = np.tile(np.eye(2) * 0.4**2, (1, 68, 1, 1))
    half = np.tile(np.eye(2) * 0.12**2, (1, 68, 1, 1))
    s = landmark_score(np.concatenate([sharp, half, diffuse]), uncertainty_half=0.12)
    assert s[0] > 0.99 and s[1] == pytest.approx(0.5) and s[2] < 0.02


def test_as_bgr_passthrough_is_contiguous():
    f = np.zeros((10, 20, 3), np.uint8)[:, ::2]
    out = as_bgr(f)
    assert out.flags.c_contiguous and out.shape == (10, 10, 3)


def test_bundled_model_is_accurate_on_a_moving_real_face(face_photo):
    """The shipped model (not the stand-in) puts the landmarks on the face along the whole path."""
    from star_track.model.schemes import W300_68

    img, pts, box = face_photo
    frames, truth = affine_path(img, pts, box)
    with Tracker(smoothing="none") as tr:
        results = [tr.track(f) for f in frames]
    assert all(len(r) == 1 for r in results)
    nme = [np.linalg.norm(r[0].raw_landmarks - t, axis=1).mean() / W300_68.inter_ocular(t)
           for r, t in zip(results, truth)]
    assert np.median(nme) < 0.08, nme


def test_face_that_jumps_is_reacquired_with_the_same_id(model_path, face_photo):
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=24)
    w = frames[0].shape[1]
    shift = np.float32([[1, 0, w * 0.3], [0, 1, 0]])  # a cut: the face jumps by ~1 face size
    jumped = cv2.warpAffine(frames[0], shift, (w, frames[0].shape[0]))
    with Tracker(model=model_path, detect_every=5) as tr:
        ids = [[f.track_id for f in tr.track(x)] for x in [frames[0]] * 2 + [jumped] * 4]
    assert ids[-1] == [0], ids
    assert all(i in ([], [0]) for i in ids), ids


class _CountingEngine:
    """Wraps an engine and records the batch size of every call."""

    def __init__(self, engine):
        self.engine, self.meta, self.name, self.calls = engine, engine.meta, "counting", []

    def infer(self, crops):
        self.calls.append(len(crops))
        return self.engine.infer(crops)


def test_new_face_stops_refining_once_the_framing_converges(face_photo):
    """A well-detected face costs the box pass plus one re-framed pass, not 1 + refine_steps; with a zero
    tolerance every step runs (the mechanism, not luck, saves the pass), and the landmarks barely differ."""
    from star_track.engines import create_engine
    from star_track.model.schemes import W300_68

    img, pts, _ = face_photo
    engine = create_engine("default", "onnxruntime")
    results = {}
    for tol in (0.05, 0.0):
        counting = _CountingEngine(engine)
        with Tracker(engine=counting, refine_steps=3, refine_tolerance=tol) as tr:
            faces = tr.detect_image(img, search="single")
        assert len(faces) == 1
        results[tol] = (sum(counting.calls), faces[0].raw_landmarks)
    assert results[0.05][0] <= 2, results
    assert results[0.0][0] == 4, results
    iod = W300_68.inter_ocular(pts)
    assert np.linalg.norm(results[0.05][1] - results[0.0][1], axis=1).mean() / iod < 0.01


def test_stage_hook_and_landmarks_for_boxes_are_the_tracker_own_path(face_photo, model_path):
    """The public hooks benchmarks use: on_stage sees every stage; landmarks_for_boxes is detect_image's
    per-face path on given boxes (same landmarks), with no effect on the video tracks."""
    from star_track.tracking.tracker import STAGES

    img, _, box = face_photo
    with Tracker(model=model_path, engine="onnxruntime", smoothing="kalman") as tracker:
        seen: dict[str, float] = {}
        tracker.on_stage = lambda stage, s: seen.__setitem__(stage, seen.get(stage, 0.0) + s)
        tracker.track(img)
        tracker.track(img)
        assert set(seen) == set(STAGES) and all(v >= 0 for v in seen.values())
        tracker.on_stage = None
        tracks_before = tracker.num_tracks
        faces = tracker.landmarks_for_boxes(img, [box, box])
        assert tracker.num_tracks == tracks_before and len(faces) == 2
        assert faces[0] is not None and faces[0].track_id == 0 and faces[1].track_id == 1
        np.testing.assert_array_equal(faces[0].raw_landmarks, faces[1].raw_landmarks)
        assert faces[0].raw_landmarks.shape == (tracker.scheme.num_points, 2)


def test_landmarks_for_boxes_checks_its_boxes_and_gives_the_face_state(face_photo, model_path):
    """Bad boxes are a ValueError naming them, not junk faces (a (2, 6) array read as three boxes) or numpy's
    reshape message; a face gets its face state as in photo mode."""
    img, _, box = face_photo
    h, w = img.shape[:2]
    with Tracker(model=model_path, engine="onnxruntime") as tracker:
        face = tracker.landmarks_for_boxes(img, box)[0]
        assert face is not None and face.pose is not None and np.isfinite(face.eye_open).all()
        for bad, needle in ((np.zeros((2, 6)), "shape"), ([1, 2, 3], "shape"), ("abcd", "numbers"),
                            ([np.nan, 0, 10, 10], "not a box"), ([300, 300, 10, 10], "not a box"),
                            ([50, 50, 50, 50], "not a box"), ([w + 10, 10, w + 50, 50], "outside")):
            with pytest.raises(ValueError, match=needle):
                tracker.landmarks_for_boxes(img, bad)


def test_a_face_wholly_outside_the_frame_is_not_reported(face_photo, model_path):
    """A frame of another size (here 1x1) after a tracked face: the crop moved on from the last landmarks gives
    landmarks outside the new frame; such a face is not reported (it was, for a frame, far outside the image)."""
    img = face_photo[0]
    with Tracker(model=model_path, engine="onnxruntime") as tracker:
        assert len(tracker.track(img, 0.0)) == 1
        assert tracker.track(np.zeros((1, 1, 3), np.uint8), 0.04) == []
        faces = tracker.track(img, 0.08)
        assert all(f.box[2] > 0 and f.box[0] < img.shape[1] for f in faces)


def test_a_closed_tracker_says_so_in_one_error(face_photo, model_path):
    """After close() (or its with block) every call raises TrackerClosedError, not an AttributeError from a
    released detector, nor silently working on for a face already tracked."""
    from star_track import TrackerClosedError

    img, _, box = face_photo
    tracker = Tracker(model=model_path, engine="onnxruntime")
    tracker.track(img)
    tracker.close()
    tracker.close()  # idempotent
    for call in (lambda: tracker.track(img), lambda: tracker.detect_image(img),
                 lambda: tracker.landmarks_for_boxes(img, box)):
        with pytest.raises(TrackerClosedError, match="closed"):
            call()


@pytest.mark.parametrize("crop_from", ["smoothed", "raw"])
def test_next_crop_frames_the_followed_landmarks_moved_on(model_path, face_photo, crop_from, monkeypatch):
    """Each frame's crop frames the last frame's smoothed (or, asked, raw) landmarks moved on by their last motion:
    a still face keeps a still crop instead of feeding the network's noise back into its next input."""
    import star_track.tracking.landmarker as landmarker

    framed: list[np.ndarray] = []
    real = landmarker.crop_from_landmarks
    monkeypatch.setattr(landmarker, "crop_from_landmarks",
                        lambda pts, *a, **k: framed.append(np.array(pts, np.float64)) or real(pts, *a, **k))
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=40)
    faces, firsts = [], []
    with Tracker(model=model_path, crop_from=crop_from, background_detection=False) as tr:
        for i, f in enumerate(frames[:6]):
            n = len(framed)
            faces.append(tr.track(f, i / 30.0)[0])
            firsts.append(framed[n] if len(framed) > n else None)
    for t in range(2, 6):
        prev, before = faces[t - 1], faces[t - 2]
        follow = (prev.landmarks if crop_from == "smoothed" else prev.raw_landmarks).astype(np.float64)
        older = (before.landmarks if crop_from == "smoothed" else before.raw_landmarks).astype(np.float64)
        expected = follow + (follow.mean(0) - older.mean(0))
        assert np.abs(firsts[t] - expected).max() < 1e-3, t
    assert max(np.abs(f.landmarks - f.raw_landmarks).max() for f in faces[2:]) > 0.05  # the two differ


def test_crop_from_is_checked(model_path):
    with pytest.raises(ValueError, match="crop_from"):
        Tracker(model=model_path, crop_from="detector")
