"""STAR loss (v1 and v2), AWing, and the stacked total (STAR_SPEC section 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from star_track.nn.network import decode_heatmaps_torch, eig2x2_torch

LAMBDA_RANGE = (1e-6, 1e2)  # users of the reference report NaN from extreme eigenvalues


def _smooth_l1(t: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """d(t) = 50 t^2 for |t| < 0.01, |t| - 0.005 otherwise (STAR's smooth-L1 on |t|)."""
    a = t.abs()
    return torch.where(a < threshold, 0.5 / threshold * a * a, a - 0.5 * threshold)


def star_loss(heatmaps: torch.Tensor, target: torch.Tensor, version: str = "v2", w: float = 1.0,
              eps: float = 1e-5) -> torch.Tensor:
    """STAR loss of fused heatmaps (B, N, H, W) against targets (B, N, 2) in [-1, 1].

    v2 (reference default): d(v1.e)/sqrt(l1) + d(v2.e)/sqrt(l2) + w (|l1| + |l2|).
    v1 (the published WFLW run): smooth-L1 of ||z||, z_i = (v_i.e)/sqrt(l_i), + w mean(|l1| + |l2|).
    """
    mean, cov = decode_heatmaps_torch(heatmaps)
    lam, vec = eig2x2_torch(cov)
    lam = lam.clamp(*LAMBDA_RANGE)
    err = target - mean  # (B, N, 2)
    proj = (vec * err.unsqueeze(-1)).sum(-2)  # (B, N, 2): v_i . e
    reg = w * (lam[..., 0].abs() + lam[..., 1].abs())
    if version == "v2":
        data = (_smooth_l1(proj) / torch.sqrt(lam + eps)).sum(-1)
    elif version == "v1":
        z = proj / torch.sqrt(lam + eps)
        data = _smooth_l1(torch.sqrt((z * z).sum(-1) + 1e-12))
    else:
        raise ValueError(f"unknown STAR loss version {version!r} (v1, v2)")
    return (data + reg).mean()


def awing_loss(pred: torch.Tensor, target: torch.Tensor, omega: float = 14.0, theta: float = 0.5,
               epsilon: float = 1.0, alpha: float = 2.1) -> torch.Tensor:
    """Adaptive Wing loss on sigmoid maps, weighted 1 + 10 x [maxpool3x3(target) >= 0.2], mean over pixels."""
    delta = (target - pred).abs()
    power = alpha - target
    a = omega * (1 / (1 + (theta / epsilon) ** power)) * power * ((theta / epsilon) ** (power - 1)) / epsilon
    c = theta * a - omega * torch.log1p((theta / epsilon) ** power)
    loss = torch.where(delta < theta, omega * torch.log1p((delta / epsilon) ** power), a * delta - c)
    weight = 1 + 10 * (F.max_pool2d(target, 3, 1, 1) >= 0.2).to(pred.dtype)
    return (loss * weight).mean()


def heatmap_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between the student's and the teacher's heatmap distributions (B, N, H, W),
    mean over landmarks, in [0, 1]: the distributions STAR decodes its means and covariances from, so the student
    learns the teacher's uncertainty as well as its landmarks."""
    def dist(h: torch.Tensor) -> torch.Tensor:
        h = h.float().clamp_min(0)
        return h / h.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)

    return 0.5 * (dist(student) - dist(teacher)).abs().sum(dim=(2, 3)).mean()


def stacked_loss(fused: list[torch.Tensor], points: list[torch.Tensor], edges: list[torch.Tensor],
                 landmarks: torch.Tensor, point_targets: torch.Tensor, edge_targets: torch.Tensor,
                 star_version: str = "v2", star_w: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over stacks s of 2^(s - S + 1) [STAR(fused_s) + 10 AWing(points_s) + 10 AWing(edges_s)]."""
    s_count = len(fused)
    total = fused[0].new_zeros(())
    parts = {"star": 0.0, "awing_points": 0.0, "awing_edges": 0.0}
    for s in range(s_count):
        weight = 2.0 ** (s - s_count + 1)
        ls = star_loss(fused[s].float(), landmarks, star_version, star_w)
        lp = awing_loss(points[s].float(), point_targets)
        le = awing_loss(edges[s].float(), edge_targets)
        total = total + weight * (ls + 10 * lp + 10 * le)
        parts["star"] += weight * float(ls.detach())
        parts["awing_points"] += weight * float(lp.detach())
        parts["awing_edges"] += weight * float(le.detach())
    return total, parts
