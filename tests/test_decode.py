"""Heatmap decoding recovers the mean and covariance of synthetic anisotropic, rotated Gaussians."""
from __future__ import annotations

import numpy as np
import pytest

from star_track.decode import decode_heatmaps, eig2x2


def gaussian_map(size: int, mean: tuple[float, float], sigmas: tuple[float, float], angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap of N(mean, Σ) on the [-1, 1] grid, Σ = R diag(σ²) Rᵀ; returns (map, Σ)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag(np.square(sigmas)) @ rot.T
    g = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(g, g)  # xx varies along columns (x), yy along rows (y)
    d = np.stack([xx - mean[0], yy - mean[1]], -1)
    m = np.einsum("hwi,ij,hwj->hw", d, np.linalg.inv(cov), d)
    return np.exp(-0.5 * m), cov


CASES = [  # mean (x, y), (σ_major, σ_minor), angle
    ((0.0, 0.0), (0.10, 0.10), 0.0),
    ((0.2, -0.3), (0.15, 0.05), 0.0),
    ((-0.25, 0.1), (0.15, 0.05), np.pi / 2),
    ((0.1, 0.2), (0.12, 0.04), np.pi / 6),
    ((-0.3, -0.2), (0.09, 0.05), -1.1),
]


@pytest.mark.parametrize("mean,sigmas,angle", CASES)
def test_decode_recovers_gaussian(mean, sigmas, angle):
    hm, cov = gaussian_map(64, mean, sigmas, angle)
    got_mean, got_cov = decode_heatmaps(hm[None, None] * 3.7)  # scale must not matter
    np.testing.assert_allclose(got_mean[0, 0], mean, atol=2e-3)
    np.testing.assert_allclose(got_cov[0, 0], cov, atol=0.03 * sigmas[0] ** 2)
    lam, vec = eig2x2(got_cov[0, 0])
    np.testing.assert_allclose(np.sqrt(lam), sorted(sigmas), rtol=0.03)
    major = vec[:, 1]
    expected = np.array([np.cos(angle), np.sin(angle)])
    if sigmas[0] != sigmas[1]:
        assert abs(major @ expected) > 0.999  # principal direction (up to sign)


def test_decode_batch_is_independent_and_matches_torch():
    maps, covs, means = [], [], []
    for mean, sigmas, angle in CASES:
        hm, cov = gaussian_map(64, mean, sigmas, angle)
        maps.append(hm)
        covs.append(cov)
        means.append(mean)
    hm = np.stack(maps)[None]  # (1, 5, 64, 64)
    mean, cov = decode_heatmaps(hm)
    for i in range(len(CASES)):
        m1, c1 = decode_heatmaps(hm[:, i:i + 1])
        np.testing.assert_allclose(mean[0, i], m1[0, 0], atol=1e-6)
        np.testing.assert_allclose(cov[0, i], c1[0, 0], atol=1e-7)
    torch = pytest.importorskip("torch")
    from star_track.nn.network import decode_heatmaps_torch

    tm, tc = decode_heatmaps_torch(torch.from_numpy(hm.astype(np.float32)))
    np.testing.assert_allclose(tm.numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(tc.numpy(), cov, atol=1e-5)


def test_negative_values_are_clipped_and_uniform_map_is_wide():
    hm, _ = gaussian_map(64, (0.3, 0.3), (0.05, 0.05), 0.0)
    noisy = hm - 0.5  # mostly negative background: clipped away
    mean, _ = decode_heatmaps(noisy[None, None])
    np.testing.assert_allclose(mean[0, 0], (0.3, 0.3), atol=5e-3)
    _, cov = decode_heatmaps(np.ones((1, 1, 64, 64)))
    # uniform on [-1, 1]: variance 1/3 (discrete grid is slightly larger)
    np.testing.assert_allclose(np.diag(cov[0, 0]), [1 / 3, 1 / 3], rtol=0.05)
