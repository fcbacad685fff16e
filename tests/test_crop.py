"""Crop geometry: frame <-> crop round trips and covariance mapping A Σ Aᵀ."""
from __future__ import annotations

import numpy as np
import pytest

from star_track.crop import Crop, crop_from_box, crop_from_landmarks, crops_to_frame, frame_to_normalized

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("angle", [0.0, 0.4, -1.2])
def test_round_trip(angle):
    crop = Crop(center=(321.5, 140.25), side=180.0, angle=angle, size=128)
    pts = RNG.uniform(200, 400, size=(50, 2))
    np.testing.assert_allclose(crop.to_frame(crop.to_crop(pts)), pts, atol=1e-9)
    u = frame_to_normalized(crop, pts)
    back, _ = crop.normalized_to_frame(u, np.zeros((50, 2, 2)))
    np.testing.assert_allclose(back, pts, atol=1e-8)
    # the centre maps to the crop centre (0 in normalised units) and the side spans [-1, 1]
    np.testing.assert_allclose(frame_to_normalized(crop, np.array([crop.center]))[0], 0, atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 0.7, 2.5])
def test_covariance_maps_like_the_points(angle):
    crop = Crop(center=(100.0, 80.0), side=64.0, angle=angle, size=256)
    cov_u = np.array([[0.004, 0.0015], [0.0015, 0.001]])
    samples = RNG.multivariate_normal([0.1, -0.2], cov_u, size=20000)
    frame_samples, _ = crop.normalized_to_frame(samples, np.zeros((len(samples), 2, 2)))
    empirical = np.cov(frame_samples.T)
    _, mapped = crop.normalized_to_frame(np.array([[0.1, -0.2]]), np.cov(samples.T)[None])
    np.testing.assert_allclose(mapped[0], empirical, rtol=1e-6, atol=1e-9)
    # a similarity scales variances by (side / 2)² and preserves the eigenvalue ratio
    lam_u = np.linalg.eigvalsh(cov_u)
    lam_f = np.linalg.eigvalsh(crop.normalized_to_frame(np.zeros((1, 2)), cov_u[None])[1][0])
    k = (crop.side / 2) ** 2  # d(frame) / d(normalised) = side / 2
    np.testing.assert_allclose(lam_f, lam_u * k, rtol=1e-9)


def test_all_faces_of_a_frame_map_back_like_each_crop_alone():
    crops = [Crop((100.5, 200.0), 150.0, 0.3, 256), Crop((400.0, 50.0), 80.0, -1.2, 256),
             Crop((40.0, 50.0), 33.0, 2.9, 128)]
    mean = RNG.uniform(-1, 1, (3, 68, 2))
    a = RNG.normal(size=(2, 3, 68, 2, 2))
    covs = a @ np.swapaxes(a, -1, -2)  # two sets (raw, calibrated) per face
    pts, mapped = crops_to_frame(crops, mean, covs)
    for b, crop in enumerate(crops):
        p, c = crop.normalized_to_frame(mean[b], covs[:, b])
        np.testing.assert_allclose(pts[b], p, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(mapped[:, b], c, rtol=1e-12, atol=1e-9)


def test_crop_from_landmarks_rotation_levels_the_eyes():
    pts = np.array([[0, 0], [10, 0], [5, 8], [2, 12], [8, 12]], float)
    theta = 0.5
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    turned = pts @ rot.T + [300, 200]
    crop = crop_from_landmarks(turned, 64, scale=1.3, rotate=True, eye_corners=(0, 1))
    assert crop.angle == pytest.approx(theta)
    c = crop.to_crop(turned)
    assert c[0, 1] == pytest.approx(c[1, 1])  # eyes level in the crop
    assert crop.side == pytest.approx(12 * 1.3)


def test_crop_from_box_calibration():
    crop = crop_from_box((100, 100, 200, 180), 128, calibration=(0.1, -0.05, 1.5))
    assert crop.side == pytest.approx(150)
    assert crop.center == pytest.approx((160, 135))


def test_rolled_box_crop_turns_the_calibration_with_the_face():
    from star_track.detection.blazeface import Detection

    # Eyes on a line rising 90 degrees in the image (face lying on its side): roll = +pi/2.
    kps = np.zeros((6, 2), np.float32)
    kps[0], kps[1] = (100, 100), (100, 140)
    det = Detection(np.array([80, 80, 180, 180], np.float32), 0.9, kps)
    assert det.roll == pytest.approx(np.pi / 2)
    c = crop_from_box(det.box, 64, (0.0, 0.1, 1.0), det.roll)
    # "Down the face" (+0.1 side along the face's y axis) is image -x when the face is rolled by +90 degrees.
    assert c.center == pytest.approx((130 - 10, 130))
    assert c.angle == pytest.approx(np.pi / 2)
    upright = crop_from_box(det.box, 64, (0.0, 0.1, 1.0))
    assert upright.center == pytest.approx((130, 140)) and upright.angle == 0.0
