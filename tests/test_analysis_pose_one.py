"""The one-face fast path of the batched head pose (pose_one) gives the batched solver's results."""
from __future__ import annotations

import numpy as np
import pytest

from star_track.analysis.mean_face import mean_face
from star_track.analysis.openness import openness_arrays, openness_one
from star_track.analysis.pose import Camera, project, rotation_from_euler
from star_track.analysis.pose_batch import exp_so3, solve_core

CAM = Camera(700.0, 640.0, 310.0, 250.0)


def _face(n, rng, outliers=0):
    face = mean_face(n)
    r = rotation_from_euler(*rng.uniform((-50, -25, -30), (50, 25, 30)))
    t = np.array([rng.uniform(-5, 5), rng.uniform(-3, 3), rng.uniform(50, 80)])
    uv = project(face.points, r, t, CAM) + rng.normal(0, 1.5, (n, 2))
    uv[rng.choice(n, outliers, replace=False)] += rng.normal(0, 25, (outliers, 2))  # Huber weights at work
    a = rng.uniform(0.5, 5.0, (n, 2))
    theta = rng.uniform(0, np.pi, n)
    c, s = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    cov = rot @ (a[:, :, None] * np.eye(2)) @ rot.swapaxes(-1, -2)
    return uv, cov, r, t


@pytest.mark.parametrize("n", [68, 98])
@pytest.mark.parametrize("start", ["cold", "warm", "far", "one_step"])
@pytest.mark.parametrize("weights", ["cov", "none", "outliers"])
def test_one_face_path_matches_the_batched_path(n, start, weights):
    rng = np.random.default_rng(n + len(start) + 3 * len(weights))
    uv, cov, r, t = _face(n, rng, outliers=6 if weights == "outliers" else 0)
    cov = None if weights == "none" else cov
    init, iters = None, None
    if start != "cold":
        # far: the face turned away; not converged in 6 steps from there, it is solved again from a cold start
        w = np.array([[0.0, 2.9, 0.0]]) if start == "far" else rng.normal(0, 0.03, (1, 3))
        init = ((exp_so3(w) @ r)[0], t + rng.normal(0, 0.5, 3))
        iters = 1 if start == "one_step" else None
    one = solve_core(uv[None], None if cov is None else cov[None], CAM,
                     None if init is None else (init[0][None], init[1][None]), max_iterations=iters)
    # Two faces go through the batched path; the second is a copy.
    two = solve_core(np.stack([uv, uv]), None if cov is None else np.stack([cov, cov]), CAM,
                     None if init is None else (np.stack([init[0]] * 2), np.stack([init[1]] * 2)),
                     max_iterations=iters)
    assert one.ok[0] and two.ok[0]
    if start == "cold" or (start == "far" and cov is not None):  # (unweighted, the far start converges)
        assert np.isnan(one.moved).all()
    for a, b in zip(one, two):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-9, atol=1e-12)
    face = mean_face(n)
    np.testing.assert_allclose(openness_one(one.normalised[0], one.rotation[0], one.translation[0], face),
                               openness_arrays(one.normalised, one.rotation, one.translation, face)[0],
                               rtol=1e-12, atol=1e-15)


def test_one_face_with_no_pose_is_nan_as_in_the_batched_path():
    face = mean_face(68)
    uv = np.tile([[320.0, 240.0]], (68, 1)) + np.linspace(0, 1e-9, 68)[:, None]  # all points in one spot
    one = solve_core(uv[None], None, CAM)
    two = solve_core(np.stack([uv, uv]), None, CAM)
    assert not one.ok[0] and not two.ok[0]
    assert np.isnan(one.rotation).all() and np.isnan(one.rotation_cov).all() and np.isnan(one.rms).all()
    assert np.isnan(openness_one(one.normalised[0], one.rotation[0], one.translation[0], face)).all()
