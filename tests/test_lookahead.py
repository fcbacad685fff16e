"""Look-ahead (fixed-lag) smoothing: the RTS revision, the face-level filter's window, the Tracker's queue of
waiting frames, process_video and the command line."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from typer.testing import CliRunner

from star_track import Tracker, VideoSource, process_video
from star_track.cli.app import app
from star_track.io.landmarks import read_landmarks_csv
from star_track.smoothing import LOOKAHEAD_TUNING, FaceLevelSmoother, make_smoother
from star_track.smoothing.cv_bank import CVBank
from star_track.smoothing.fixed_lag import FixedLagWindow
from test_cli import face_video  # noqa: F401 (fixture)
from test_face_smoother import DT, SIZE, _covariances, _face, _jitter, _noise
from test_tracker import affine_path


def _textbook_rts(xs, Ps, xps, Pps, F):
    """Rauch-Tung-Striebel over a whole run (one block): filtered (x, P), priors (x⁻, P⁻) per step."""
    out = [xs[-1]]
    for k in range(len(xs) - 2, -1, -1):
        C = Ps[k] @ F.T @ np.linalg.inv(Pps[k + 1])
        out.insert(0, xs[k] + C @ (out[0] - xps[k + 1]))
    return out


@pytest.mark.parametrize("lag", [1, 3, 20])
def test_window_revisions_are_rts_over_the_window(lag):
    rng = np.random.default_rng(0)
    bank = CVBank(np.zeros((1, 2)), np.eye(2)[None], np.ones((1, 2)))
    window = FixedLagWindow(lag)
    window.push([bank], first=True)
    xs, Ps, xps, Pps = [bank.x[0].copy()], [bank.P[0].copy()], [None], [None]
    for t in range(12):
        x, P = bank.predict(DT, np.full((1, 2), 5.0), 0.0)
        bank.update(x, P, rng.normal(size=(1, 2)) + t * 0.1, 0.3 * np.eye(2)[None], gate=0.0)
        window.push([bank], first=False)
        xs.append(bank.x[0].copy()), Ps.append(bank.P[0].copy()), xps.append(x[0]), Pps.append(P[0])
    assert bank.F is not None
    n = min(lag + 1, len(xs))
    expected = _textbook_rts(xs[-n:], Ps[-n:], xps[-n:], Pps[-n:], bank.F)
    got = [states[0][0] for states in window.revisions()]
    assert len(got) == n
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert not np.allclose(got[0], xs[-n])  # the oldest frame really is revised


def test_face_filter_revises_a_still_face_to_less_jitter_than_its_live_output():
    rng = np.random.default_rng(1)
    face = _face()
    true_cov, cov = _covariances(face)
    truth = np.repeat(face[None], 90, axis=0)
    noise = _noise(true_cov, 90, rng)
    f = make_smoother("face", lookahead=6)
    live, settled = [], {}
    for t, (p, e) in enumerate(zip(truth, noise)):
        live.append(f.update(p + e, cov, DT, SIZE))
        if t >= 6:
            settled[t - 6] = f.revised(f.updates - 6)
    out = np.stack([settled[t] for t in range(84)])
    assert _jitter(out, truth[:84]) < 0.8 * _jitter(np.stack(live[:84]), truth[:84])  # 0.70x when written
    np.testing.assert_allclose(f.revised(f.updates), live[-1])  # the newest frame is its filtered estimate
    assert f.revised(f.updates - 7) is None  # out of the window


def test_revisions_do_not_cross_a_restart_and_need_a_look_ahead():
    face = _face()
    _, cov = _covariances(face)
    f = make_smoother("face", lookahead=3)
    for _ in range(4):
        f.update(face, cov, DT, SIZE)
    before = f.updates
    f.reset()
    f.update(face + 5, cov, DT, SIZE)
    assert f.revised(before) is None and f.revised(f.updates) is not None
    causal = FaceLevelSmoother()
    causal.update(face, cov, DT, SIZE)
    assert causal.revised(causal.updates) is None


def test_look_ahead_tuning_applies_unless_given():
    f = make_smoother("face", lookahead=2)
    assert f.rigid_r_scale == LOOKAHEAD_TUNING["rigid_r_scale"] and f.q_rigid == LOOKAHEAD_TUNING["q_rigid"]
    g = make_smoother("face", lookahead=2, rigid_r_scale=2.0)
    assert g.rigid_r_scale == 2.0
    assert make_smoother("face").rigid_r_scale != LOOKAHEAD_TUNING["rigid_r_scale"]
    with pytest.raises(ValueError, match="lookahead"):
        make_smoother("face", lookahead=-1)


def test_revision_takes_out_much_of_its_filter_lag_on_a_swaying_face():
    """On a face swaying at 0.5 Hz, the look-ahead filter's live output trails the truth; its revision of the same
    frames, 4 frames later, trails it far less."""
    rng = np.random.default_rng(2)
    face = _face()
    true_cov, cov = _covariances(face, sd=0.3)
    t = np.arange(90) * DT
    truth = face[None] + (10 * np.sin(np.pi * t))[:, None, None] * np.array([1.0, 0.0])
    noise = _noise(true_cov, 90, rng)
    f = make_smoother("face", lookahead=4)
    live, settled = [], []
    for k, (p, e) in enumerate(zip(truth, noise)):
        live.append(f.update(p + e, cov, DT, SIZE))
        if k >= 4:
            settled.append(f.revised(f.updates - 4))
    err_live = np.abs((np.stack(live[20:80]) - truth[20:80])[..., 0].mean(1)).mean()
    err_settled = np.abs((np.stack(settled[20:80]) - truth[20:80])[..., 0].mean(1)).mean()
    assert err_settled < 0.7 * err_live  # 0.57x when written


# -- Tracker, process_video, command line ---------------------------------------------------------------
def _track_all(tr: Tracker, frames: list, reset_at: int | None = None) -> tuple[list, list, list[int]]:
    """Live results, settled results (flushed at the end) and how many frames each ``settled()`` call gave."""
    live, settled, counts = [], [], []
    for i, frame in enumerate(frames):
        if i == reset_at:
            tr.reset()
        live.append(tr.track(frame))
        got = tr.settled()
        counts.append(len(got))
        settled += got
    return live, settled + tr.flush(), counts


def _same_frames(live: list, settled: list) -> None:
    assert len(settled) == len(live)
    for a, b in zip(live, settled):
        assert [f.track_id for f in a] == [f.track_id for f in b]
        for fa, fb in zip(a, b):
            np.testing.assert_array_equal(fa.raw_landmarks, fb.raw_landmarks)  # the same frame


def test_tracker_settles_every_frame_in_order_with_revised_landmarks(model_path, face_photo):
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=20)
    with Tracker(model=model_path, lookahead=5) as tr:
        live, settled, counts = _track_all(tr, frames)
        assert tr.flush() == [] and tr.settled() == []
    assert counts == [0] * 5 + [1] * 15
    _same_frames(live, settled)
    assert all(f.landmarks.dtype == np.float32 for faces in settled for f in faces)
    moved = [np.abs(a[0].landmarks - b[0].landmarks).max() for a, b in zip(live[:-1], settled[:-1]) if a and b]
    assert max(moved) > 0.01  # revised, not passed through
    np.testing.assert_allclose(live[-1][0].landmarks, settled[-1][0].landmarks, atol=1e-4)


def test_tracker_without_look_ahead_settles_the_frame_just_tracked(model_path, face_photo):
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=3)
    with Tracker(model=model_path) as tr:
        for frame in frames:
            faces = tr.track(frame)
            assert tr.settled() == [faces] and tr.settled() == []
        for frame in frames:  # a live caller that never asks holds no history
            tr.track(frame)
        assert len(tr.flush()) == 1


@pytest.mark.parametrize("kwargs, match", [({"lookahead": -1}, "lookahead"), ({"lookahead": 2.5}, "lookahead"),
                                           ({"lookahead": 2, "smoothing": "kalman"}, "smoothing='face'"),
                                           ({"smoothing_params": {"lookahead": 2}}, "Tracker"),
                                           ({"lookahead": 65}, "at most 64")])
def test_tracker_look_ahead_arguments_are_checked(model_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Tracker(model=model_path, **kwargs)


def test_a_reset_keeps_the_frames_waiting_so_they_still_pair_in_order(model_path, face_photo):
    img, pts, box = face_photo
    frames, _ = affine_path(img, pts, box, n=12)
    with Tracker(model=model_path, lookahead=4) as tr:
        live, settled, _ = _track_all(tr, frames, reset_at=6)  # a scene cut: 4 frames waiting, not lost or shifted
    _same_frames(live, settled)


def test_process_video_writes_every_frame_with_look_ahead(tmp_path, face_video, model_path):
    rows = []
    with VideoSource(face_video) as src, Tracker(model=model_path, lookahead=4, fps=src.fps) as tr:
        n = src.frame_count
        summary = process_video(src, tr, on_frame=lambda vf, faces: rows.append((vf.index, len(faces))))
    assert summary.frames == n == len(rows)
    assert [i for i, _ in rows] == list(range(n))
    with VideoSource(face_video) as src, Tracker(model=model_path, lookahead=4, fps=src.fps) as tr:
        assert process_video(src, tr, on_frame=lambda vf, faces: vf.index == 2).frames == 3  # stops as asked


def test_a_signal_with_look_ahead_still_writes_every_frame_tracked(face_video, model_path):
    seen = []

    def on_frame(vf, faces):
        seen.append(vf.index)
        if vf.index == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with VideoSource(face_video) as src, Tracker(model=model_path, lookahead=4, fps=src.fps) as tr:
        summary = process_video(src, tr, on_frame=on_frame)
    # frame 2 is written once frame 6 is tracked; the loop stops there and the 4 waiting frames are flushed
    assert summary.interrupted and summary.frames == 7 and seen == list(range(7))


def test_cli_video_looks_ahead_by_default_and_checks_the_option(tmp_path, face_video, model_path):
    runner = CliRunner()
    outs = {}
    for name, extra in (("default", []), ("live", ["--lookahead", "0"])):
        out = tmp_path / f"{name}.csv"
        r = runner.invoke(app, ["video", str(face_video), "-l", str(out), "-m", str(model_path), "--no-progress",
                                *extra])
        assert r.exit_code == 0, r.output
        outs[name] = read_landmarks_csv(out)
    assert len(outs["default"]) == len(outs["live"]) > 0
    assert not np.array_equal(outs["default"]["landmarks"], outs["live"]["landmarks"])
    np.testing.assert_array_equal(outs["default"]["frame"], outs["live"]["frame"])
    r = runner.invoke(app, ["video", str(face_video), "-l", str(tmp_path / "k.csv"), "-m", str(model_path),
                            "-s", "kalman", "--lookahead", "3"])
    assert r.exit_code == 2 and "--smoothing face" in r.output
    r = runner.invoke(app, ["video", str(face_video), "-l", str(tmp_path / "k2.csv"), "-m", str(model_path),
                            "-s", "kalman", "--no-progress"])
    assert r.exit_code == 0, r.output  # the default look-ahead only applies to face smoothing
    r = runner.invoke(app, ["video", str(face_video), "-l", str(tmp_path / "k3.csv"), "--lookahead", "65"])
    assert r.exit_code == 2 and "--lookahead" in r.output
    r = runner.invoke(app, ["webcam", "-s", "one-euro", "--lookahead", "2"])
    assert r.exit_code == 2 and "--smoothing face" in r.output  # before any display or camera is touched
