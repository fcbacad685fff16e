"""Face-level smoother: pooled rigid motion calms a still face, rigid motion and expressions are followed."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.nonrigid import displacement
from star_track.smoothing import FaceLevelSmoother, KalmanSmoother, OneEuroSmoother, make_smoother
from star_track.smoothing.face_model import load_basis, point_parts

DT = 1 / 30
SIZE = 200.0  # face size in pixels
CENTRE = np.array([320.0, 240.0])


def _face(n: int = 68) -> np.ndarray:
    basis = load_basis(n)
    assert basis is not None, f"no shape basis for {n} points"
    return basis[0] * SIZE + CENTRE


def _covariances(pts: np.ndarray, sd: float = 1.0, ratio: float = 4.0, calibrated: float = 30.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """STAR-like covariances: each point's noise ``ratio`` x larger along a direction that varies over the face
    (like a contour tangent); reported ``calibrated`` x larger than the true noise variance, as the calibrated
    STAR covariance is (it predicts the total error, bias included). Returns (true, reported)."""
    ang = np.arange(len(pts)) * 0.7
    u = np.stack([np.cos(ang), np.sin(ang)], 1)
    v = np.stack([-u[:, 1], u[:, 0]], 1)
    true = sd ** 2 * (ratio ** 2 * u[:, :, None] * u[:, None, :] + v[:, :, None] * v[:, None, :]) / ratio
    return true, calibrated * true


def _noise(cov: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    L = np.linalg.cholesky(cov)
    return np.einsum("nij,tnj->tni", L, rng.normal(size=(frames, len(cov), 2)))


def _run(f, truth: np.ndarray, noise: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return np.stack([f.update(t + e, cov, DT, SIZE) for t, e in zip(truth, noise)])


def _jitter(out: np.ndarray, truth: np.ndarray, skip: int = 10) -> float:
    d = np.diff(out, axis=0) - np.diff(truth, axis=0)
    return float(np.sqrt(np.mean(np.sum(d[skip:] ** 2, axis=-1))))


VARIANTS = pytest.mark.parametrize("modes", [False, True], ids=["residual", "pca-modes"])


@VARIANTS
def test_still_face_with_anisotropic_noise_is_much_calmer_than_raw_and_per_landmark_kalman(modes):
    rng = np.random.default_rng(0)
    face = _face()
    true_cov, cov = _covariances(face)
    truth = np.repeat(face[None], 90, axis=0)
    noise = _noise(true_cov, 90, rng)
    raw = _jitter(truth + noise, truth)
    kalman = _jitter(_run(KalmanSmoother(), truth, noise, cov), truth)
    face_out = _run(FaceLevelSmoother(basis=modes), truth, noise, cov)
    jit = _jitter(face_out, truth)
    assert jit < 0.15 * raw, (jit, raw)
    assert jit < 0.5 * kalman, (jit, kalman)
    assert np.isfinite(face_out).all()


def test_rigid_step_is_followed_within_two_frames():
    rng = np.random.default_rng(1)
    face = _face()
    true_cov, cov = _covariances(face)
    step = np.array([0.25, -0.1]) * SIZE
    truth = np.stack([face + (step if t >= 30 else 0.0) for t in range(45)])
    out = _run(FaceLevelSmoother(), truth, _noise(true_cov, 45, rng), cov)
    moved = (out[31:] - out[25:29].mean(0)).mean(1)  # mean displacement from two frames after the step on
    assert np.all(np.linalg.norm(moved - step, axis=-1) < 0.05 * np.linalg.norm(step)), moved


def test_rigid_sway_has_bounded_lag():
    rng = np.random.default_rng(2)
    face = _face()
    true_cov, cov = _covariances(face)
    T = 120
    t = np.arange(T) * DT
    ang = np.radians(8) * np.sin(2 * np.pi * 0.8 * t)
    shift = 0.3 * SIZE * np.stack([np.sin(2 * np.pi * 0.5 * t), 0.5 * np.sin(2 * np.pi * 0.7 * t)], 1)
    c, s = np.cos(ang), np.sin(ang)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    truth = np.einsum("tij,nj->tni", rot, face - CENTRE) + CENTRE + shift[:, None]
    noise = _noise(true_cov, T, rng)
    err = {}
    for name in ("face", "kalman", "one-euro", "none"):
        out = _run(make_smoother(name), truth, noise, cov)
        err[name] = float(np.sqrt(np.mean(np.sum((out - truth)[20:] ** 2, axis=-1))))
    assert err["face"] < err["none"], err  # lag added is smaller than the noise removed
    assert err["face"] < err["one-euro"], err
    assert err["face"] < err["kalman"], err  # why it is the default: calmer and closer to a moving head


def test_face_level_is_the_default_smoothing():
    import inspect

    from star_track import Tracker
    from star_track.cli.options import TrackerOptions

    assert inspect.signature(Tracker).parameters["smoothing"].default == "face"
    assert TrackerOptions().smoothing == "face"
    assert isinstance(make_smoother(), FaceLevelSmoother)


def _expression(face: np.ndarray, T: int = 40, at: int = 15, rise: int = 3) -> np.ndarray:
    """Mouth opening and the image-left eye closing together over ``rise`` frames from ``at``, then held."""
    w = np.clip((np.arange(T) - at) / rise, 0.0, 1.0)
    return np.stack([face + displacement(face, k, k) for k in w])


@VARIANTS
def test_mouth_opening_and_eye_closing_are_followed(modes):
    rng = np.random.default_rng(3)
    face = _face()
    true_cov, cov = _covariances(face, sd=0.7)
    truth = _expression(face)
    noise = _noise(true_cov, len(truth), rng)
    region = np.r_[36:42, 48:68]  # the blinking eye and the mouth
    moved = np.linalg.norm(truth[-1] - truth[0], axis=-1)[region].max()
    errs = {}
    for name, f in (("face", FaceLevelSmoother(basis=modes)), ("one-euro", OneEuroSmoother())):
        out = _run(f, truth, noise, cov)
        errs[name] = np.linalg.norm(out - truth, axis=-1)[:, region].max(1)  # worst point per frame
    at, done = 15, 15 + 3  # the movement runs from frame 15 to frame 18
    peak = {k: float(e[at:done + 2].max()) for k, e in errs.items()}
    # While it moves and one frame after, no point of the eye or mouth is a quarter of the movement behind, and
    # the worst lag is no larger than One Euro's (which smooths a still face far less) ...
    assert peak["face"] < 0.25 * moved, (errs["face"][at - 1:done + 4], moved)
    assert peak["face"] <= peak["one-euro"], peak
    # ... and within a few frames the new shape is held (no slow creep towards it).
    assert errs["face"][done + 2:done + 9].mean() < 0.12 * moved, errs["face"][done:done + 9]


def test_point_parts_cut_eyes_and_lips_into_corners_and_sides():
    g = point_parts(68, _face())
    same = lambda *i: len({int(g[k]) for k in i}) == 1  # noqa: E731
    assert same(*range(17)) and same(36, 39) and same(37, 38) and same(40, 41) and same(61, 62, 63)
    assert len({int(g[36]), int(g[37]), int(g[40])}) == 3  # corners, upper lid, lower lid
    assert len({int(g[48]), int(g[50]), int(g[57]), int(g[60]), int(g[62]), int(g[66])}) == 6
    g98 = point_parts(98, _face(98))
    assert g98[96] != g98[97] and np.sum(g98 == g98[96]) == 1  # each pupil on its own
    assert point_parts(5, np.zeros((5, 2))) is None
    g29 = point_parts(29, _face()[:29])  # COFW: the two lip lines share their corners
    assert (np.bincount(g29) > 0).all() and (np.bincount(g) > 0).all() and (np.bincount(g98) > 0).all()


def test_one_landmark_glitch_is_smoothed_while_a_lid_moving_as_one_is_followed():
    rng = np.random.default_rng(5)
    face = _face()
    true_cov, cov = _covariances(face, sd=0.7)
    frames, at, d = 60, 40, 3.0  # a 3 px move along the face's vertical, ~4 noise sd
    noise = _noise(true_cov, frames, rng)
    still = np.repeat(face[None], frames, axis=0)
    base = _run(FaceLevelSmoother(), still, noise, cov)
    glitch = noise.copy()
    glitch[at, 37, 1] += d  # one lid point, one frame
    out = _run(FaceLevelSmoother(), still, glitch, cov)
    assert (out - base)[at, 37, 1] < 0.35 * d, (out - base)[at:at + 3, 37, 1]
    closing = still.copy()
    closing[at:, [37, 38], 1] += d  # the upper lid comes down and stays
    out = _run(FaceLevelSmoother(), closing, noise, cov)
    assert np.mean((out - base)[at + 2, [37, 38], 1]) > 0.6 * d, (out - base)[at:at + 4, [37, 38], 1]


def test_98_points_and_a_scheme_without_basis():
    rng = np.random.default_rng(4)
    for n, face in ((98, _face(98)), (29, _face()[:29])):
        true_cov, cov = _covariances(face)
        truth = np.repeat(face[None], 60, axis=0)
        noise = _noise(true_cov, 60, rng)
        f = FaceLevelSmoother(basis=True)
        out = _run(f, truth, noise, cov)
        assert out.shape == (60, n, 2)
        assert f.k == (0 if n == 29 else f.modes.shape[2]) and (n == 29 or f.k > 10)
        assert _jitter(out, truth) < 0.3 * _jitter(truth + noise, truth)


def test_reset_and_a_new_point_count_start_again_from_the_measurement():
    face = _face()
    _, cov = _covariances(face)
    f = FaceLevelSmoother()
    for _ in range(10):
        f.update(face, cov, DT, SIZE)
    far = face + 500.0
    f.reset()
    np.testing.assert_allclose(f.update(far, cov, DT, SIZE), far, atol=1e-6)
    f98 = _face(98)
    np.testing.assert_allclose(f.update(f98, np.tile(np.eye(2), (98, 1, 1)), DT, SIZE), f98, atol=1e-6)


def test_bad_covariances_and_missing_points_give_finite_output():
    rng = np.random.default_rng(5)
    face = _face()
    true_cov, cov = _covariances(face)
    f = FaceLevelSmoother()
    for t in range(40):
        c = cov.copy()
        z = face + _noise(true_cov, 1, rng)[0]
        if t % 3 == 0:
            c[5] = np.nan
            c[7] = np.inf
            c[9] = -c[9]  # not PSD
        if t % 4 == 0:
            z[11] = np.nan
        out = f.update(z, c, DT, SIZE)
        assert np.isfinite(out).all(), t
    last = f.last_cov
    assert last is not None and np.isfinite(last).all()
    assert np.all(np.linalg.eigvalsh(last) > 0)
    assert np.median(np.trace(last, axis1=1, axis2=2)) < np.median(np.trace(true_cov, axis1=1, axis2=2))


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError):
        make_smoother("face", q_rigid=0)
    with pytest.raises(ValueError):
        make_smoother("face", r_scale=-1)


@pytest.mark.parametrize("params", [{}, {"isotropic": True}], ids=["star-r", "isotropic"])
def test_faces_of_a_frame_update_stacked_as_they_would_alone(params):
    from star_track.smoothing.batched import update_all

    rng = np.random.default_rng(7)
    faces = [_face() * s + o for s, o in ((1.0, 0.0), (0.7, 40.0), (1.3, -25.0))]
    true_cov, cov = _covariances(faces[0], sd=0.8)
    alone = [FaceLevelSmoother(**params) for _ in faces]
    stacked = [FaceLevelSmoother(**params) for _ in faces]
    for t in range(40):
        pts = [f + np.array([np.sin(t / 5 + i), 0.5 * np.cos(t / 7)]) * 3 + _noise(true_cov, 1, rng)[0]
               for i, f in enumerate(faces)]
        if t == 20:
            pts[1][5] = np.nan  # a missing point: that face updates on its own this frame
        covs = [cov] * len(faces)
        expected = [f.update(p, c, DT, SIZE) for f, p, c in zip(alone, pts, covs)]
        got = update_all(stacked, pts, covs, DT, [SIZE] * len(faces))
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, atol=1e-9, rtol=0)
