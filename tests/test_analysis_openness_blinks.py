"""Eye / mouth openness (pose-normalised) and blink events (issue 28), synthetic and on hand-labelled real clips."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from star_track.analysis.blinks import BlinkDetector, detect_blinks
from star_track.analysis.mean_face import mean_face
from star_track.analysis.openness import face_openness
from star_track.analysis.pose import Camera, project, rotation_from_euler, solve_pose
from tests.conftest import DATA

SIZE = (640, 480)
CAM = Camera.default(*SIZE)
LABELS = Path(__file__).parent / "data"


def _face(yaw=0.0, pitch=0.0, roll=0.0, lid=1.0, mouth_open=0.0):
    """Mean face landmarks at a pose, lids closed to fraction ``lid`` of their gap, mouth opened by cm."""
    pts = mean_face(68).points.copy()
    for up, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
        mid = (pts[up] + pts[lo]) / 2
        pts[up] = mid + (pts[up] - mid) * lid
        pts[lo] = mid + (pts[lo] - mid) * lid
    pts[[65, 66, 67, 56, 57, 58, 7, 8, 9], 1] += mouth_open  # lower inner/outer lip and chin move down
    return project(pts, rotation_from_euler(yaw, pitch, roll), np.array([0.0, 0.0, 60.0]), CAM)


def _open(uv):
    return face_openness(uv, solve_pose(uv, image_size=SIZE))


def test_open_eye_is_about_one_and_closing_lids_fall_through_a_blink():
    o = _open(_face())
    assert 0.9 < o.left_eye < 1.1 and 0.9 < o.right_eye < 1.1
    seq = [_open(_face(lid=f)).eyes for f in (1.0, 0.6, 0.2, 0.0, 0.5, 1.0)]  # a blink warped over 3+2 frames
    assert seq[0] > seq[1] > seq[2] > seq[3] and seq[3] < seq[4] < seq[5]
    assert seq[3] < 0.05
    assert seq[2] == pytest.approx(0.2, abs=0.05)


def test_openness_is_pose_normalised():
    front = _open(_face())
    for yaw, pitch, roll in ((45, 0, 0), (-45, 0, 0), (0, 25, 0), (0, -25, 0), (20, 15, 30)):
        o = _open(_face(yaw, pitch, roll))
        for a, b in ((o.left_eye, front.left_eye), (o.right_eye, front.right_eye)):
            assert a == pytest.approx(b, rel=0.03), (yaw, pitch, roll)
        assert o.mouth == pytest.approx(front.mouth, rel=0.03)
    # The raw image gap shrinks when the head pitches down (what pose normalisation corrects).
    raw = lambda uv: np.linalg.norm(uv[41] - uv[37])  # noqa: E731
    assert raw(_face(0, -35, 0)) < 0.85 * raw(_face())


def test_mouth_openness_grows_with_the_lip_gap_and_the_sides_are_the_subjects():
    closed, half, wide = (_open(_face(mouth_open=m)).mouth for m in (0.0, 1.0, 2.5))
    assert closed < half < wide and wide > 0.5
    # Close only the subject's left eye (300W 42-47, image right): left_eye drops, right_eye stays.
    uv = _face()
    uv_w = uv.copy()
    for up, lo in ((43, 47), (44, 46)):
        mid = (uv[up] + uv[lo]) / 2
        uv_w[up] = uv_w[lo] = mid
    o = _open(uv_w)
    assert o.left_eye < 0.05 and o.right_eye > 0.9


def _face98(yaw=0.0, pitch=0.0, roll=0.0, lid=1.0):
    """The 98-point mean face at a pose with the lids (WFLW 61-67 / 69-75) closed to fraction ``lid``."""
    pts = mean_face(98).points.copy()
    for up, lo in ((61, 67), (62, 66), (63, 65), (69, 75), (70, 74), (71, 73)):
        mid = (pts[up] + pts[lo]) / 2
        pts[up] = mid + (pts[up] - mid) * lid
        pts[lo] = mid + (pts[lo] - mid) * lid
    return project(pts, rotation_from_euler(yaw, pitch, roll), np.array([0.0, 0.0, 60.0]), CAM)


def test_98_point_openness_closes_and_is_pose_normalised():
    front = _open(_face98())
    # The 98-point eye norm is scaled so real eyes read as with 68 points: the mean face's eye reads 1 / 1.2.
    assert front.left_eye == pytest.approx(front.right_eye, rel=1e-6)
    assert front.left_eye == pytest.approx(0.83, abs=0.02)
    seq = [_open(_face98(lid=f)).eyes for f in (1.0, 0.5, 0.0)]
    assert seq[0] > seq[1] > seq[2] and seq[2] < 0.03
    assert seq[1] == pytest.approx(0.5 * seq[0], rel=0.05)
    for pose in ((40, 0, 0), (0, -25, 0), (15, 20, -30)):
        o = _open(_face98(*pose))
        assert o.left_eye == pytest.approx(front.left_eye, rel=0.03) and o.mouth == pytest.approx(front.mouth, rel=0.03)


def _wflw_train_faces(step: int) -> np.ndarray:
    path = DATA / "wflw" / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_train.txt"
    if not path.is_file():
        pytest.skip(f"no shared WFLW labels at {path}")
    lines = path.read_text().splitlines()[::step]
    return np.array([np.array(line.split()[:196], float).reshape(98, 2) for line in lines])


def test_98_and_68_points_read_the_same_openness_on_real_labels():
    try:
        from star_track.model.schemes import WFLW_98
    except ImportError:  # pragma: no cover (the scheme module's old place)
        from star_track.schemes import WFLW_98  # type: ignore[no-redef]
    faces = _wflw_train_faces(step=25)
    size = (4000, 4000)
    o98, o68 = [], []
    for pts in faces:
        o98.append(_open_at(pts, size))
        o68.append(_open_at(pts[list(WFLW_98.to_68)], size))
    o98, o68 = np.array(o98), np.array(o68)
    open_eyes = (o68[:, :2] > 0.3).all(1)
    ratio = o98[open_eyes, :2] / o68[open_eyes, :2]
    assert open_eyes.sum() > 30
    assert np.all(np.abs(np.median(ratio, 0) - 1.0) < 0.05), np.median(ratio, 0)
    assert np.corrcoef(o98[:, 0], o68[:, 0])[0, 1] > 0.98
    np.testing.assert_allclose(np.median(o98[:, 2]), np.median(o68[:, 2]), rtol=0.05)  # mouth: same inner lips


def _open_at(pts, size):
    o = face_openness(pts, solve_pose(pts, image_size=size))
    return o.left_eye, o.right_eye, o.mouth


def _series(closed_frames, n=150, fps=25.0, glitches=(), noise=0.03, seed=0):
    rng = np.random.default_rng(seed)
    o = 1.3 + rng.normal(0, noise, n)
    for a, b in closed_frames:
        o[a:b + 1] = 0.5
        o[a - 1] = o[b + 1] = 0.9  # half-closed edges
    for g in glitches:
        o[g] = 0.4
    return np.arange(n) / fps, o


def test_blink_detector_finds_start_and_end_and_ignores_one_frame_glitches():
    t, o = _series([(40, 43), (100, 102)], glitches=(70,))
    blinks = detect_blinks(t, o)
    assert [(b.start_frame, b.end_frame) for b in blinks] == [(39, 45), (99, 104)]
    assert blinks[0].start == pytest.approx(39 / 25) and blinks[0].end == pytest.approx(45 / 25)
    assert blinks[0].depth < 0.5
    # Eyes held shut for 2 s is no blink; NaN (no face) frames are skipped.
    t, o = _series([(30, 80)])
    o[90:95] = np.nan
    assert detect_blinks(t, o) == []


def test_blink_detector_tracks_are_independent():
    t, o = _series([(40, 43)])
    t2, o2 = _series([(80, 83)], seed=1)
    ids = np.r_[np.zeros(len(t)), np.ones(len(t2))].astype(int)
    order = np.argsort(np.r_[t, t2], kind="stable")
    tt, oo, ii = np.r_[t, t2][order], np.r_[o, o2][order], ids[order]
    got = sorted((b.track_id, b.start_frame) for b in detect_blinks(tt, oo, ii))
    assert got == [(0, 39), (1, 79)]
    det = BlinkDetector()
    assert det.update(5, 0.0, math.nan) == (False, None)


def _clip_states(clip: Path) -> tuple[np.ndarray, list, list]:
    """Every frame of a clip through the tracker and a FaceAnalyzer (what the tracker wiring does)."""
    from star_track import Tracker
    from star_track.analysis.analyzer import FaceAnalyzer

    cap = cv2.VideoCapture(str(clip))
    times, states = [], []
    analyzer = FaceAnalyzer()
    with Tracker(model="star68-fast") as tracker:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            faces = tracker.track(frame, i / 25.0)
            state = None
            if faces:
                f = faces[0]
                # Raw (unsmoothed) landmarks: the smoother would blunt a 3-frame lid closure.
                state = analyzer.update(f.raw_landmarks, f.covariance, (frame.shape[1], frame.shape[0]), i / 25.0)
            times.append(i / 25.0)
            states.append(state)
            i += 1
    return np.array(times), states, analyzer.blinks


@pytest.mark.slow
def test_blinks_on_hand_labelled_real_clips():
    files = sorted(LABELS.glob("blinks_*.json"))
    assert files, "hand-made blink lists are committed with this test"
    found = total = false = 0
    seconds = 0.0
    for path in files:
        label = json.loads(path.read_text())
        clip = DATA / label["clip"]
        if not clip.is_file():
            pytest.skip(f"no shared clip at {clip}")
        t, states, got = _clip_states(clip)
        assert len(t) == label["frames"]
        seconds += len(t) / label["fps"]
        truth = label["closed_frames"]
        # The events FaceAnalyzer emitted are those of the offline detector over the same openness series,
        # and a frame is flagged closed in each of them.
        eyes = np.array([np.mean(s.eye_open) if s is not None else np.nan for s in states])
        assert [(b.start, b.end) for b in got] == [(b.start, b.end) for b in detect_blinks(t, eyes)]
        for b in got:
            first, end = round(b.start * 25), round(b.end * 25)
            assert states[first] is not None and states[first].eyes_closed
            assert states[end] is not None and states[end].blink == b
        frames = [(round(b.start * label["fps"]), round(b.end * label["fps"])) for b in got]
        total += len(truth)
        # A labelled blink is found when a detected one overlaps its closed frames (end is the first open frame).
        found += sum(any(s <= b and e > a for s, e in frames) for a, b in truth)
        false += sum(not any(s <= b and e > a for a, b in truth) for s, e in frames)
    assert found >= 0.9 * total, (found, total)
    assert false <= seconds / 60.0, (false, seconds)  # at most one false blink per minute of video
