"""Smoothing: Kalman gain follows the STAR covariance, gating catches up with fast motion, One Euro basics."""
from __future__ import annotations

import numpy as np
import pytest

from star_track.smoothing import KalmanSmoother, NoSmoothing, OneEuroSmoother, make_smoother

DT = 1 / 30


def _settle(f, z, cov, n=30, scale=100.0):
    for _ in range(n):
        out = f.update(z, cov, DT, scale)
    return out


def test_kalman_moves_less_along_the_uncertain_axis():
    f = KalmanSmoother(gate=0)  # plain filter: gain only from P and R
    z = np.array([[100.0, 100.0], [200.0, 200.0]])
    cov = np.array([np.diag([100.0, 0.25]), np.diag([0.25, 0.25])])  # point 0: uncertain along x
    _settle(f, z, cov)
    out = f.update(z + 3.0, cov, DT, 100.0)
    move0 = out[0] - z[0]
    assert 0 < move0[0] < 0.5 * move0[1], move0  # moves much less along x than along y
    move1 = out[1] - z[1]
    assert move1[0] == pytest.approx(move1[1], rel=1e-6)  # isotropic point: same along both
    assert move1[0] > move0[0]


def test_kalman_respects_rotated_covariance():
    f = KalmanSmoother(gate=0)
    d = np.array([1.0, 1.0]) / np.sqrt(2)  # uncertain along the diagonal
    cov = (100.0 * np.outer(d, d) + 0.25 * np.eye(2))[None]
    z = np.array([[50.0, 50.0]])
    _settle(f, z, cov)
    along = f.update(z + 3 * d, cov, DT, 100.0) - z
    f2 = KalmanSmoother(gate=0)
    _settle(f2, z, cov)
    perp = np.array([1.0, -1.0]) / np.sqrt(2)
    across = f2.update(z + 3 * perp, cov, DT, 100.0) - z
    assert np.linalg.norm(along) < 0.5 * np.linalg.norm(across)


def test_kalman_smooths_noise_and_is_resolution_independent():
    rng = np.random.default_rng(1)
    truth = np.tile([[100.0, 80.0]], (5, 1))
    noise = rng.normal(0, 2.0, size=(200, 5, 2))
    cov = np.tile(np.eye(2) * 4.0, (5, 1, 1))
    results = []
    for k in (1.0, 10.0):  # the same scene at 10x the resolution
        f = KalmanSmoother(r_scale=1.0)  # here the covariance is the true noise (the product scales it by 0.1)
        outs = np.array([f.update(k * (truth + n), k * k * cov, DT, k * 100.0) for n in noise])
        results.append(outs / k)
    err_raw = np.abs(noise[50:]).mean()
    err_kf = np.abs(results[0][50:] - truth).mean()
    assert err_kf < 0.8 * err_raw
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-6)


def test_kalman_gating_catches_up_with_fast_motion():
    z = np.tile([[100.0, 100.0]], (10, 1))
    cov = np.tile(np.eye(2) * 1.0, (10, 1, 1))
    lags = {}
    for gate in (0.0, 9.21):
        f = KalmanSmoother(gate=gate, speed_ref=0.0)
        _settle(f, z, cov)
        out = f.update(z + [60.0, 0.0], cov, DT, 100.0)  # the head jumps 60 px in one frame
        lags[gate] = 60.0 - out[0, 0]
    assert lags[9.21] < 0.5 * lags[0.0]
    assert lags[9.21] < 10.0


def test_kalman_speed_adaptation_cuts_lag_when_moving_not_when_still():
    rng = np.random.default_rng(2)
    cov = np.tile(np.eye(2), (5, 1, 1))  # the true noise
    base = np.tile([[100.0, 80.0]], (5, 1))
    results = {}
    for speed_ref in (0.0, 0.1):
        still, moving = (KalmanSmoother(speed_ref=speed_ref, r_scale=1.0) for _ in range(2))
        noise = rng.normal(0, 1.0, size=(120, 5, 2))
        s_out = np.array([still.update(base + n, cov, DT, 100.0) for n in noise])
        ramp = [base + [3.0 * t, 0.0] for t in range(120)]  # 3 px/frame = 0.9 face sizes/s at 30 fps
        m_out = np.array([moving.update(z, cov, DT, 100.0) for z in ramp])
        results[speed_ref] = (np.abs(np.diff(s_out[40:], axis=0)).mean(), np.abs(m_out[40:] - np.array(ramp[40:])).mean())
    (jit0, lag0), (jit1, lag1) = results[0.0], results[0.1]
    assert jit1 < 1.3 * jit0  # still: about as smooth
    assert lag1 < 0.5 * lag0 or lag1 < 0.05  # moving: far less lag


def test_kalman_survives_degenerate_covariance():
    f = KalmanSmoother()
    z = np.array([[10.0, 10.0], [20.0, 20.0]])
    bad = np.array([[[np.nan, 0], [0, 1]], [[0.0, 0.0], [0.0, 0.0]]])
    f.update(z, bad, DT, 50.0)
    out = f.update(z + 1, bad, DT, 50.0)
    assert np.isfinite(out).all()


def test_kalman_measurement_noise_clips_negative_eigenvalues():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(40, 2, 2))
    cov = a @ np.swapaxes(a, 1, 2) - 0.5 * np.eye(2)  # some indefinite, some negative definite
    cov[0] = [[1.0, 2.0], [2.0, 1.0]]
    lam, vec = np.linalg.eigh(cov)
    expected = (vec * np.clip(lam, 0, None)[:, None, :]) @ np.swapaxes(vec, 1, 2)
    f = KalmanSmoother(r_scale=2.0, r_floor=0.01)
    floor = (0.01 * 50.0) ** 2 * np.eye(2)
    np.testing.assert_allclose(f.measurement_noise(cov, 50.0), 2.0 * expected + floor, atol=1e-12)


def test_one_euro_basics():
    f = OneEuroSmoother(min_cutoff=1.0, beta=0.0)
    x = np.array([[10.0, 20.0], [30.0, 40.0]])
    np.testing.assert_allclose(f.update(x, None, DT, 100), x)  # first sample passes through
    np.testing.assert_allclose(f.update(x, None, DT, 100), x)  # constant input stays put
    out = f.update(x + 10, None, DT, 100)
    assert np.all(out > x) and np.all(out < x + 10)  # a step is low-passed
    for _ in range(200):
        out = f.update(x + 10, None, DT, 100)
    np.testing.assert_allclose(out, x + 10, atol=1e-3)  # ...and converges


def test_one_euro_beta_reduces_lag_in_fast_motion():
    lags = []
    for beta in (0.0, 5.0):
        f = OneEuroSmoother(min_cutoff=0.5, beta=beta)
        for t in range(60):
            out = f.update(np.array([[t * 5.0, 0.0]]), None, DT, 100)
        lags.append(59 * 5.0 - out[0, 0])
    assert lags[1] < 0.5 * lags[0]


def test_factory():
    assert isinstance(make_smoother("kalman", q=2.0), KalmanSmoother)
    assert isinstance(make_smoother("one_euro"), OneEuroSmoother)
    assert isinstance(make_smoother("none"), NoSmoothing)
    a, b = make_smoother("kalman"), make_smoother("kalman")
    assert a is not b  # one filter per track
    with pytest.raises(ValueError, match="unknown smoothing"):
        make_smoother("median")
    with pytest.raises(ValueError, match="invalid parameters"):
        make_smoother("kalman", bogus=1)
    with pytest.raises(ValueError):
        make_smoother("one-euro", min_cutoff=0)



def test_a_subclass_that_overrides_update_is_never_stacked():
    """Several running filters of a subclass (a user's own update) each go through that update."""
    from star_track.smoothing.batched import update_all
    from star_track.smoothing.face_level import FaceLevelSmoother

    calls: list[str] = []
    for base in (KalmanSmoother, FaceLevelSmoother):

        class Mine(base):  # type: ignore[valid-type, misc]
            def update(self, points, cov, dt=1 / 30, scale=100.0):
                calls.append(type(self).__mro__[1].__name__)
                return super().update(points, cov, dt, scale)

        faces = [Mine(), Mine()]
        rng = np.random.default_rng(0)
        cov = np.tile(np.eye(2), (68, 1, 1))
        for _ in range(3):
            update_all(faces, [rng.uniform(0, 100, (68, 2)) for _ in faces], [cov, cov], DT, [80.0, 80.0])
        assert calls.count(base.__name__) == 6, calls

def test_faces_smoothed_together_match_separate_filters():
    from star_track.smoothing.batched import update_all

    rng = np.random.default_rng(5)
    a = rng.normal(size=(3, 30, 2, 2))
    covs = a @ np.swapaxes(a, -1, -2)
    covs[1, 4] = [[1.0, 2.0], [2.0, 1.0]]  # indefinite: clipped the same way
    covs[2, 7, 0, 0] = np.nan  # unusable: face-sized
    together = [KalmanSmoother() for _ in range(3)] + [OneEuroSmoother()]
    alone = [KalmanSmoother() for _ in range(3)] + [OneEuroSmoother()]
    sizes = [80.0, 150.0, 40.0, 60.0]
    pos = rng.uniform(0, 300, (4, 30, 2))
    for t in range(12):
        pos += rng.normal(0, 2 + 10 * (t == 6), (4, 30, 2))  # a jump at frame 6 opens the gates
        pts = [p + rng.normal(0, 1, p.shape) for p in pos]
        cov = [*covs, np.zeros((30, 2, 2))]
        got = update_all(together, pts, cov, DT, sizes)
        want = [f.update(p, c, DT, s) for f, p, c, s in zip(alone, pts, cov, sizes)]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-9)
    for f, g in zip(together[:3], alone[:3]):
        np.testing.assert_allclose(f.P, g.P, rtol=1e-9, atol=1e-9)
