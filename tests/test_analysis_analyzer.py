"""Per-frame face state (issue 28): FrameAnalyzer / FaceAnalyzer, warm starts, pose smoothing, blink events."""
from __future__ import annotations

import math

import numpy as np
import pytest

from star_track.analysis.analyzer import COLUMNS, FaceAnalyzer, FrameAnalyzer, analyze_photo
from star_track.analysis.mean_face import mean_face
from star_track.analysis.pose import Camera, PoseError, project, rotation_from_euler
from star_track.analysis.pose_batch import solve_pose_arrays
from star_track.errors import StarTrackError

SIZE = (640, 480)
CAM = Camera.default(*SIZE)
FPS = 25.0


def _min_jerk(t, t0, duration, amplitude):
    s = np.clip((t - t0) / duration, 0.0, 1.0)
    return amplitude * (10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5)


def _turning_head(n=100):
    """Yaw: still, a 60-degree turn in 0.6 s, still; pitch: a 20-degree nod later; roll fixed."""
    t = np.arange(n) / FPS
    return t, np.c_[_min_jerk(t, 1.0, 0.6, 60) - 30, 5 - _min_jerk(t, 2.4, 0.6, 20), np.full(n, 3.0)]


def _frame(face, angles, rng, noise=1.0, lid=1.0, t=(0.0, 0.0, 60.0)):
    pts = face.points.copy()
    if lid != 1.0:
        for up, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
            mid = (pts[up] + pts[lo]) / 2
            pts[up], pts[lo] = mid + (pts[up] - mid) * lid, mid + (pts[lo] - mid) * lid
    uv = project(pts, rotation_from_euler(*angles), np.array(t), CAM)
    return uv + rng.normal(0, noise, uv.shape)


def test_warm_started_frames_match_a_cold_solve_and_smoothing_helps_without_lag():
    face = mean_face(68)
    rng = np.random.default_rng(0)
    t, truth = _turning_head()
    an = FaceAnalyzer(track_id=4)
    cov = np.tile(np.eye(2) * 4.0, (68, 1, 1))
    measured, smoothed = [], []
    for ti, angles in zip(t, truth):
        uv = _frame(face, angles, rng)
        state = an.update(uv, cov, SIZE, ti)
        cold = solve_pose_arrays(uv[None], cov[None], camera=CAM)
        m = state.measured()
        assert state.track_id == 4 and state.pose is not None and m is not None
        # Warm start (the track's predicted pose, mostly one Gauss-Newton step) = a cold solve of the frame.
        np.testing.assert_allclose(m.angles, cold.angles[0], atol=0.05)
        np.testing.assert_allclose(m.angles_sd, cold.angles_sd[0], rtol=0.15)
        np.testing.assert_allclose(state.pose.angles_sd, m.angles_sd, rtol=0.02)  # the sd is the frame's own
        measured.append(m.angles)
        smoothed.append(state.pose.angles)
    measured, smoothed = np.array(measured), np.array(smoothed)
    assert np.array_equal(measured[0], smoothed[0])  # a track's first frame is its own measurement
    still = (t < 0.9) | ((t > 1.8) & (t < 2.3)) | (t > 3.2)
    rms = lambda e: np.sqrt(np.mean(e ** 2, 0))  # noqa: E731
    assert np.all(rms(smoothed[still] - truth[still]) < 0.9 * rms(measured[still] - truth[still]))
    # Following a fast turn (peak 290 deg/s) the smoothed yaw trails by no more than a few degrees.
    assert np.abs(smoothed[~still] - truth[~still]).max() < 4.0


def test_tracks_are_independent_follow_their_ids_and_restart_after_a_gap():
    face = mean_face(68)
    rng = np.random.default_rng(1)
    an = FrameAnalyzer()
    poses = {10: (25.0, -5.0, 0.0), 20: (-30.0, 10.0, 8.0)}
    place = {10: (-8.0, 0.0, 70.0), 20: (8.0, 0.0, 70.0)}
    for i in range(20):
        ids = [10, 20] if i % 2 else [20, 10]  # the order of faces in a frame changes: ids carry the state
        uv = np.stack([_frame(face, poses[k], rng, t=place[k]) for k in ids])
        states = an.update(ids, uv, None, SIZE, i / FPS)
        cold = solve_pose_arrays(uv, None, camera=CAM)
        for j, (k, s) in enumerate(zip(ids, states)):
            m = s.measured()
            assert s.track_id == k and s.pose is not None and m is not None
            np.testing.assert_allclose(m.angles, cold.angles[j], atol=0.05)
            assert np.abs(s.pose.angles - cold.angles[j]).max() < 1.0
    # Track 10 comes back after a second (longer than the filter's max_gap): it restarts from its measurement.
    uv = _frame(face, (-10.0, 0.0, 0.0), rng)[None]
    back = an.update([10], uv, None, SIZE, 20 / FPS + 1.0)[0]
    m = back.measured()
    assert back.pose is not None and m is not None and np.array_equal(back.pose.angles, m.angles)
    with pytest.raises(StarTrackError, match="distinct"):
        an.update([1, 1], np.stack([uv[0], uv[0]]), None, SIZE, 3.0)
    with pytest.raises(PoseError, match="one row per track"):
        an.update([1, 2], uv, None, SIZE, 3.0)
    assert an.update([], np.zeros((0, 68, 2)), None, SIZE, 3.0) == []


def test_camera_defaults_to_the_frame_and_can_be_overridden():
    face = mean_face(68)
    uv = _frame(face, (10, 0, 0), np.random.default_rng(2), noise=0.0)[None]
    plain = FrameAnalyzer().update([0], uv, None, SIZE, 0.0)[0].pose
    assert plain is not None and plain.camera == Camera(640.0, 640.0, 320.0, 240.0)
    np.testing.assert_allclose(plain.translation, [0, 0, 60], atol=0.05)
    longer = FrameAnalyzer(focal=1280).update([0], uv, None, SIZE, 0.0)[0].pose
    assert longer is not None and longer.camera is not None and longer.camera.fx == 1280
    assert longer.translation[2] == pytest.approx(2 * plain.translation[2], rel=0.05)
    own = Camera(900.0, 900.0, 300.0, 250.0)
    fixed = FrameAnalyzer(camera=own).update([0], uv, None, (1920, 1080), 0.0)[0].pose
    assert fixed is not None and fixed.camera == own
    with pytest.raises(PoseError, match="focal"):
        FrameAnalyzer(focal=0.0)


def test_blink_events_flags_and_columns():
    face = mean_face(68)
    rng = np.random.default_rng(3)
    an = FaceAnalyzer(track_id=2)
    lids = np.ones(75)
    lids[30:34] = [0.5, 0.05, 0.05, 0.5]  # a 4-frame blink at 1.2 s
    states = [an.update(_frame(face, (5, -3, 2), rng, noise=0.3, lid=f), None, SIZE, i / FPS)
              for i, f in enumerate(lids)]
    assert len(an.blinks) == 1
    b = an.blinks[0]
    assert b.track_id == 2 and b.start == pytest.approx(30 / FPS) and b.end == pytest.approx(34 / FPS)
    assert [s.eyes_closed for s in states[28:36]] == [False, False, True, True, True, True, False, False]
    assert states[34].blink == b and all(s.blink is None for s in states[:34])
    assert an.frames.blink_counts() == {2: 1}
    cols = states[31].columns()
    assert tuple(cols) == COLUMNS and cols["blink"] == 1.0 and cols["eye_open_left"] < 0.2
    assert states[10].columns()["blink"] == 0.0 and states[10].columns()["eye_open_right"] > 0.9
    assert abs(cols["yaw"] - 5) < 1.5 and cols["yaw_sd"] > 0


def test_photos_and_98_point_faces():
    rng = np.random.default_rng(4)
    f98 = mean_face(98)
    uv = np.stack([project(f98.points, rotation_from_euler(a, 0, 0), np.array([0.0, 0.0, 60.0]), CAM)
                   for a in (-20, 35)]) + rng.normal(0, 0.5, (2, 98, 2))
    states = analyze_photo(uv, None, SIZE)
    assert [s.track_id for s in states] == [0, 1]
    yaws = [s.pose.yaw for s in states if s.pose is not None]
    np.testing.assert_allclose(yaws, [-20, 35], atol=1.0)
    assert not any(s.eyes_closed for s in states) and all(s.blink is None for s in states)
    assert all(0.6 < s.eye_open[0] < 1.1 for s in states)
    # 98 points through the video path too.
    an = FaceAnalyzer()
    for i in range(5):
        st = an.update(uv[1], None, SIZE, i / FPS)
        assert st.pose is not None and abs(st.pose.yaw - 35) < 1.0


def test_a_face_with_no_pose_gives_nan_columns_and_leaves_the_other_tracks_alone():
    face = mean_face(68)
    rng = np.random.default_rng(5)
    an = FrameAnalyzer()
    for i in range(3):
        an.update([1], _frame(face, (0, 0, 0), rng)[None], None, SIZE, i / FPS)
    flat = np.full((68, 2), 300.0)  # a new track whose landmarks all sit on one pixel: no pose fits
    uv = np.stack([_frame(face, (10, 0, 0), rng), flat])
    good, bad = an.update([1, 7], uv, None, SIZE, 3 / FPS)
    assert bad.pose is None and bad.measured() is None
    assert all(math.isnan(v) for k, v in bad.columns().items() if k != "blink")
    assert good.pose is not None and 2.0 < good.pose.yaw < 10.5  # track 1 smooths on from its own state
    later = an.update([7], _frame(face, (20, 0, 0), rng)[None], None, SIZE, 4 / FPS)[0]
    assert later.pose is not None and abs(later.pose.yaw - 20) < 1.0


@pytest.mark.filterwarnings("error")  # no 0 / 0 in the filter
def test_a_repeated_time_stamp_keeps_the_state_finite():
    face = mean_face(68)
    rng = np.random.default_rng(6)
    an = FaceAnalyzer()
    for ti in (0.0, 0.04, 0.04, 0.04, 0.08):
        state = an.update(_frame(face, (12, 0, 0), rng), None, SIZE, ti)
        assert state.pose is not None and np.isfinite(state.pose.angles).all()
        assert abs(state.pose.yaw - 12) < 1.0
    assert np.isfinite(an.frames.filter.vel).all()
