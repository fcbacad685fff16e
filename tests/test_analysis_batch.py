"""Batched head pose (issue 28): the vectorised solver agrees with the single-face reference solver."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from star_track.analysis.mean_face import mean_face
from star_track.analysis.pose import Camera, PoseError, euler_from_rotation, project, rotation_from_euler, solve_pose
from star_track.analysis.pose_angles import pose_angles
from star_track.analysis.pose_batch import exp_so3, log_so3, solve_core, solve_pose_arrays, solve_poses, turn

CAM = Camera.default(640, 480)


def _faces(n_points, count, rng, pose_lo=(-60, -30, -45), pose_hi=(60, 30, 45), noise=1.0, cov=None):
    face = mean_face(n_points)
    truth = rng.uniform(pose_lo, pose_hi, (count, 3))
    t = np.c_[rng.uniform(-6, 6, count), rng.uniform(-4, 4, count), rng.uniform(45, 80, count)]
    uv = np.stack([project(face.points, rotation_from_euler(*a), tt, CAM) for a, tt in zip(truth, t)])
    if cov is None:
        cov = np.tile(np.eye(2) * noise ** 2, (count, n_points, 1, 1))
    # Noise drawn from each point's own covariance.
    chol = np.linalg.cholesky(cov)
    uv += np.einsum("fnij,fnj->fni", chol, rng.normal(0, 1, uv.shape))
    return uv, cov, truth


@pytest.mark.parametrize("n", [68, 98])
def test_batched_solver_matches_the_single_face_solver(n):
    rng = np.random.default_rng(n)
    # Anisotropic covariances that differ per point (jaw-like: long along one axis).
    a = rng.uniform(0.5, 6.0, (40, n))
    theta = rng.uniform(0, np.pi, (40, n))
    c, s = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    cov = rot @ (np.eye(2) * np.stack([a, np.full_like(a, 0.7)], -1)[..., None, :]) @ rot.swapaxes(-1, -2)
    uv, cov, _ = _faces(n, 40, rng, cov=cov)
    batch = solve_pose_arrays(uv, cov, camera=CAM)
    assert batch.ok.all()
    for i in range(len(uv)):
        ref = solve_pose(uv[i], cov[i], camera=CAM, iterations=8)
        np.testing.assert_allclose(batch.angles[i], ref.angles, atol=0.02)
        np.testing.assert_allclose(batch.angles_sd[i], ref.angles_sd, rtol=0.15)
        np.testing.assert_allclose(batch.translation[i], ref.translation, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(batch.rotation[i], ref.rotation, atol=5e-4)
    poses = solve_poses(uv[:3], cov[:3], camera=CAM)
    assert all(p is not None and p.camera == CAM for p in poses)
    np.testing.assert_allclose([p.angles for p in poses if p is not None], batch.angles[:3])


def test_batched_solver_is_never_worse_on_hard_faces():
    # Small, far, off-centre faces at extreme angles, unweighted: the fit is ill-conditioned and the reference's
    # fixed 3 steps may stop early; the batched solve converges at least as well (its residual is never larger).
    rng = np.random.default_rng(11)
    face = mean_face(68)
    truth = rng.uniform([-85, -55, -180], [85, 55, 180], (150, 3))
    t = np.c_[rng.uniform(-8, 8, 150), rng.uniform(-6, 6, 150), rng.uniform(22, 150, 150)]
    uv = np.stack([project(face.points, rotation_from_euler(*a), tt, CAM) for a, tt in zip(truth, t)])
    uv += rng.normal(0, 2.0, uv.shape)
    batch = solve_pose_arrays(uv, None, camera=CAM)
    assert batch.ok.all()
    ref_rms = np.array([solve_pose(u, camera=CAM).rms for u in uv])
    assert np.all(batch.rms <= ref_rms + 1e-3)
    err = np.abs((batch.angles - truth + 180) % 360 - 180)
    assert np.median(err) < 3.0  # 2 px noise on faces down to ~60 px wide


def test_warm_start_takes_one_step_and_recovers_from_a_wrong_start():
    rng = np.random.default_rng(3)
    uv, cov, _ = _faces(68, 60, rng)
    ref = solve_pose_arrays(uv, cov, camera=CAM, max_iterations=20, tol=1e-10)
    for degrees in (1.0, 4.0, 60.0):  # 60: a wrong start (another face's pose), solved again from scratch
        w = rng.normal(0, np.radians(degrees) / np.sqrt(3), (60, 3))
        start = (exp_so3(w) @ ref.rotation, ref.translation * rng.uniform(0.97, 1.03, (60, 1)))
        warm = solve_pose_arrays(uv, cov, camera=CAM, init=start)
        assert np.abs(warm.angles - ref.angles).max() < 0.05, degrees
    one = solve_core(uv, cov, CAM, (exp_so3(rng.normal(0, 0.004, (60, 3))) @ ref.rotation, ref.translation),
                     max_iterations=1)
    ang, _ = pose_angles(one.rotation, one.translation, one.rotation_cov)
    assert np.abs(ang - ref.angles).max() < 0.05  # one step from ~0.4 degrees lands on the converged pose
    # The steps add up to the rotation from the start (what the pose filter uses as its innovation).
    start_rot = exp_so3(rng.normal(0, 0.01, (60, 3))) @ ref.rotation
    core = solve_core(uv, cov, CAM, (start_rot, ref.translation))
    np.testing.assert_allclose(exp_so3(core.moved) @ start_rot, core.rotation, atol=2e-4)


def test_mixed_starts_and_a_face_with_no_pose_leave_the_others_alone():
    rng = np.random.default_rng(5)
    uv, cov, truth = _faces(68, 3, rng)
    first = solve_poses(uv, cov, camera=CAM)
    uv_bad = uv.copy()
    uv_bad[1] = uv_bad[1, :1]  # every landmark on one pixel: no pose fits
    mixed = solve_pose_arrays(uv_bad, cov, camera=CAM, init=[first[0], None, first[2]])
    assert mixed.ok.tolist() == [True, False, True]
    assert np.isnan(mixed.angles[1]).all()
    np.testing.assert_allclose(mixed.angles[[0, 2]], np.array([first[0].angles, first[2].angles]), atol=0.02)
    assert solve_poses(uv_bad, cov, camera=CAM)[1] is None


def test_rotation_helpers_and_vectorised_angles():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 1.0, (30, 3))
    w[0] = 0.0
    w[1] = 1e-9
    r = exp_so3(w)
    for wi, ri in zip(w, r):
        np.testing.assert_allclose(ri, cv2.Rodrigues(wi)[0], atol=1e-12)
    np.testing.assert_allclose(log_so3(r), w, atol=1e-9)
    small = rng.normal(0, 0.03, (30, 3))
    moved = turn(small, r)
    np.testing.assert_allclose(moved @ moved.transpose(0, 2, 1), np.tile(np.eye(3), (30, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(moved, exp_so3(small) @ r, atol=1e-4)
    # Faces at the image centre: angles relative to the line of sight are the camera-axis Euler angles.
    t = np.tile([0.0, 0.0, 60.0], (30, 1))
    angles, sd = pose_angles(r, t, np.tile(np.eye(3) * 1e-4, (30, 1, 1)))
    np.testing.assert_allclose(angles, [euler_from_rotation(ri) for ri in r], atol=1e-9)
    assert np.all(sd > 0)


def test_bad_batches_are_one_clear_error():
    rng = np.random.default_rng(0)
    uv, cov, _ = _faces(68, 2, rng)
    with pytest.raises(PoseError, match="landmarks must be"):
        solve_pose_arrays(uv[0], cov[0], camera=CAM)
    with pytest.raises(PoseError, match="NaN"):
        bad = uv.copy()
        bad[1, 3, 0] = np.inf
        solve_pose_arrays(bad, cov, camera=CAM)
    with pytest.raises(PoseError, match="covariance"):
        solve_pose_arrays(uv, cov[:1], camera=CAM)
    with pytest.raises(PoseError, match="one entry"):
        solve_pose_arrays(uv, cov, camera=CAM, init=[None])
    with pytest.raises(PoseError, match="init arrays"):
        solve_pose_arrays(uv, cov, camera=CAM, init=(np.eye(3), np.zeros(3)))
