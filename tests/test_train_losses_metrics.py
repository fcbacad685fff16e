"""STAR loss, AWing and evaluation metrics against hand-computed answers."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from star_track.model.schemes import W300_68  # noqa: E402
from train.losses import awing_loss, heatmap_distill_loss, star_loss  # noqa: E402
from train.metrics import auc, failure_rate, nme_per_face  # noqa: E402


def _d(t: float) -> float:  # STAR's smooth-L1, written out independently
    t = abs(t)
    return 50 * t * t if t < 0.01 else t - 0.005


def _anisotropic_heatmap() -> torch.Tensor:
    """3x3 map on the grid {-1, 0, 1}^2: mass spread along x (0.25, 0.5, 0.25) and a little along y."""
    h = torch.zeros(1, 1, 3, 3)
    h[0, 0, 1] = torch.tensor([0.25, 0.4, 0.25])  # centre row (y = 0)
    h[0, 0, 0, 1] = 0.05  # (x=0, y=-1)
    h[0, 0, 2, 1] = 0.05  # (x=0, y=+1)
    return h


def test_star_loss_v2_matches_hand_computed_value():
    h = _anisotropic_heatmap()
    # Mean is (0, 0) by symmetry. P = h (sums to 1). V1 = 1 + 1e-5, V2 = sum(P^2) + 1e-5.
    v1 = 1 + 1e-5
    v2 = 0.25**2 * 2 + 0.4**2 + 0.05**2 * 2 + 1e-5
    denom = v1 - v2 / v1
    sxx, syy = 0.5 / denom, 0.1 / denom  # no cross term: eigenvectors are the axes, x is the major one
    ex, ey = 0.1, 0.02
    target = torch.tensor([[[ex, ey]]])
    expected = _d(ey) / math.sqrt(syy + 1e-5) + _d(ex) / math.sqrt(sxx + 1e-5) + (sxx + syy)
    got = float(star_loss(h, target, "v2"))
    assert got == pytest.approx(expected, rel=1e-4)


def test_star_loss_v1_matches_hand_computed_value():
    h = _anisotropic_heatmap()
    v1 = 1 + 1e-5
    v2 = 0.25**2 * 2 + 0.4**2 + 0.05**2 * 2 + 1e-5
    denom = v1 - v2 / v1
    sxx, syy = 0.5 / denom, 0.1 / denom
    z = math.hypot(0.1 / math.sqrt(sxx + 1e-5), 0.02 / math.sqrt(syy + 1e-5))
    expected = _d(z) + (sxx + syy)
    assert float(star_loss(h, torch.tensor([[[0.1, 0.02]]]), "v1")) == pytest.approx(expected, rel=1e-4)


def _gaussian_maps(means: torch.Tensor, g: torch.Generator, size: int = 16):
    """Anisotropic, rotated Gaussians on the [-1, 1] grid."""
    lin = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    angle = torch.rand(means.shape[:-1], generator=g) * math.pi
    s1, s2 = 0.08, 0.25
    c, s = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    dx, dy = x - means[..., 0, None, None], y - means[..., 1, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    return torch.exp(-(u / s2) ** 2 / 2 - (v / s1) ** 2 / 2), means


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_star_loss_invariant_to_rotating_prediction_and_target(version):
    g = torch.Generator().manual_seed(0)
    h, means = _gaussian_maps(torch.rand(2, 5, 2, generator=g) * 1.0 - 0.5, g)
    target = means + torch.randn(2, 5, 2, generator=g) * 0.05
    base = star_loss(h, target, version)
    # rot90 on a square grid maps the point (x, y) to (y, -x), exactly.
    rotated = torch.rot90(h, 1, dims=(2, 3))
    rot_target = torch.stack([target[..., 1], -target[..., 0]], -1)
    assert float(star_loss(rotated, rot_target, version)) == pytest.approx(float(base), rel=1e-5)
    # and the loss does change when only the target moves (the test can fail)
    assert float(star_loss(rotated, target, version)) != pytest.approx(float(base), rel=1e-3)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_star_loss_gradients_finite_for_degenerate_heatmaps(version):
    h = torch.zeros(3, 2, 8, 8)
    h[0, :, 4, 4] = 1.0  # a single spike: zero covariance
    h[1] = 1.0  # perfectly flat: isotropic covariance, undefined eigenvectors
    h[2, :, 3:5, 3:5] = 1.0  # small isotropic blob
    h.requires_grad_(True)
    loss = star_loss(h, torch.full((3, 2, 2), 0.1), version)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(h.grad).all()


def test_awing_zero_at_perfect_prediction_and_weighted_near_peaks():
    target = torch.zeros(1, 1, 9, 9)
    target[0, 0, 4, 4] = 1.0
    assert float(awing_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    # the same error costs 11x as much beside a peak (weight map 1 + 10 [maxpool3x3 >= 0.2]) as far from it
    near, far = target.clone(), target.clone()
    near[0, 0, 4, 5] = 0.3
    far[0, 0, 0, 0] = 0.3
    assert float(awing_loss(near, target)) == pytest.approx(11 * float(awing_loss(far, target)), rel=1e-5)
    assert float(awing_loss(far, target)) > 0


def test_heatmap_distillation_is_the_distance_between_distributions():
    teacher = torch.zeros(1, 1, 4, 4)
    teacher[0, 0, 1, 1] = teacher[0, 0, 1, 2] = 1.0
    assert float(heatmap_distill_loss(3 * teacher, teacher)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    apart = torch.zeros(1, 1, 4, 4)
    apart[0, 0, 3, 3] = 1.0
    assert float(heatmap_distill_loss(apart, teacher)) == pytest.approx(1.0, abs=1e-6)
    half = torch.zeros(1, 1, 4, 4)
    half[0, 0, 1, 1] = 1.0
    assert float(heatmap_distill_loss(half, teacher)) == pytest.approx(0.5, abs=1e-6)
    student = half.clone().requires_grad_(True)
    heatmap_distill_loss(student, teacher).backward()
    assert student.grad[0, 0, 1, 2] < 0  # raising the missing half of the teacher's mass lowers the loss


class _BlobTeacher(torch.nn.Module):
    """Stands in for a teacher at ``input_size``: one Gaussian heatmap (1/4 resolution) on the image's bright
    blob, placed with the pixel-centre convention of the network's crops."""

    def __init__(self, input_size: int):
        super().__init__()
        self.config = type("Config", (), {"input_size": input_size})()

    def forward(self, images):
        w = images[:, 0].clamp_min(0)
        grid = torch.arange(images.shape[-1], dtype=torch.float32)
        cx = (w.sum(1) * grid).sum(-1) / w.sum((1, 2))
        cy = (w.sum(2) * grid).sum(-1) / w.sum((1, 2))
        hx, hy = (cx + 0.5) / 4 - 0.5, (cy + 0.5) / 4 - 0.5
        g = torch.arange(images.shape[-1] // 4, dtype=torch.float32)
        heat = torch.exp(-((g.view(1, 1, -1) - hx.view(-1, 1, 1)) ** 2 + (g.view(1, -1, 1) - hy.view(-1, 1, 1)) ** 2)
                         / (2 * 1.0**2))
        return [heat[:, None]], None, None


@pytest.mark.parametrize("teacher_size", [64, 96])
def test_a_teacher_at_another_input_size_teaches_the_same_places(teacher_size):
    from train.trainer import teacher_heatmaps

    grid = torch.arange(64, dtype=torch.float32)
    cx, cy = 12.2, 49.7  # a blob in the student's 64 px crop -> heatmap (16 px) position (c + 0.5) / 4 - 0.5
    img = torch.exp(-((grid.view(1, -1) - cx) ** 2 + (grid.view(-1, 1) - cy) ** 2) / (2 * 3.0**2))
    heat = teacher_heatmaps(_BlobTeacher(teacher_size), img.expand(1, 3, 64, 64), 16)[0, 0]
    assert heat.shape == (16, 16)
    g = torch.arange(16, dtype=torch.float32)
    mx, my = float((heat.sum(0) * g).sum() / heat.sum()), float((heat.sum(1) * g).sum() / heat.sum())
    assert mx == pytest.approx((cx + 0.5) / 4 - 0.5, abs=0.05) and my == pytest.approx((cy + 0.5) / 4 - 0.5, abs=0.05)


def _face68(scale: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, scale, (68, 2))
    pts[36] = (0, 50)
    pts[45] = (scale, 50)  # inter-ocular distance = scale
    return pts


def test_nme_fr_auc_known_answers():
    gt = np.stack([_face68(), _face68()])
    pred = gt.copy()
    pred[0] += (3.0, 4.0)  # every point off by 5 px -> NME 0.05
    pred[1] += (12.0, 0.0)  # off by 12 px -> NME 0.12, a failure at 0.1
    nme = nme_per_face(pred, gt, W300_68)
    np.testing.assert_allclose(nme, [0.05, 0.12], rtol=1e-9)
    assert failure_rate(nme, 0.1) == 0.5
    # CED: 0 below 0.05, 0.5 from 0.05 to 0.1 -> area/threshold = 0.5 * (0.1 - 0.05) / 0.1 = 0.25
    assert auc(nme, 0.1) == pytest.approx(0.25, abs=1e-3)
    assert auc(np.array([0.0]), 0.1) == pytest.approx(1.0, abs=1e-3)
    assert failure_rate(np.array([np.inf, 0.01]), 0.1) == 0.5  # a missed face counts as a failure
