"""The STAR stacked hourglass with ADNet's attention heads (the single definition of the network).

Layout and state-dict names follow ``STAR_SPEC.md`` section 1 so that the official checkpoints load after a
light key mapping (see :mod:`star_track.nn.checkpoint`). Importing this module imports torch; the runtime only
does so for the torch engine, training and export.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.schemes import LandmarkScheme, get_scheme


@dataclass(frozen=True)
class NetworkConfig:
    """Size of a STAR network. The paper's model is 4 stacks x 256 channels at 256x256 input."""

    scheme: str = "wflw98"
    num_stacks: int = 4
    channels: int = 256
    depth: int = 4
    input_size: int = 256
    block: str = "bottleneck"
    """``"bottleneck"``: the paper's pre-activation bottleneck blocks. ``"inverted"``: MobileNetV2-style inverted
    residual blocks (1x1 expand, 3x3 depthwise, 1x1 project) and a light stem, ~1/10 of the CPU cost at equal
    width (the fast CPU models)."""
    expand: int = 2
    """Expansion ratio of the inverted residual blocks (unused by ``"bottleneck"``)."""
    inner_expand: int | None = None
    """Expansion ratio of the inverted residual blocks below the hourglasses' top resolution (``None``: ``expand``).
    Those blocks see 1/4 of the pixels or fewer, so a wider expansion there buys capacity for little cost."""

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block type {self.block!r}; expected one of {sorted(BLOCKS)}")

    def to_dict(self) -> dict:
        """Plain dict (stored in checkpoints and in the ONNX metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class ConvBlock(nn.Module):
    """conv (with bias) -> optional BN -> optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, bn: bool = False, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=True)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class ResBlock(nn.Module):
    """Pre-activation bottleneck; ``skip_layer`` projects the residual only when cin != cout.

    (The reference creates ``skip_layer`` in every block and never uses most of them: ~3.7M dead weights that
    would also break DDP's unused-parameter check. The checkpoint importer drops them.)"""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), ConvBlock(cin, mid, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(mid), ConvBlock(mid, mid, 3)
        self.bn3, self.conv3 = nn.BatchNorm2d(mid), ConvBlock(mid, cout, 1)
        self.skip_layer = ConvBlock(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.skip_layer(x) if self.skip_layer is not None else x
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + residual


class InvertedResBlock(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand -> BN/ReLU -> 3x3 depthwise -> BN/ReLU -> 1x1 project -> BN.

    The identity skip needs cin == cout; otherwise a 1x1 projection carries the residual."""

    def __init__(self, cin: int, cout: int, expand: int = 2):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip_layer = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                                 nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.skip_layer is None else self.skip_layer(x)
        return self.body(x) + residual


BLOCKS = {"bottleneck": ResBlock, "inverted": InvertedResBlock}


def _make_block(config: "NetworkConfig", inner: bool = False):
    """Block factory ``(cin, cout) -> nn.Module`` for the configured block type; ``inner``: for the blocks below
    the hourglasses' top resolution."""
    if config.block == "inverted":
        expand = config.inner_expand if inner and config.inner_expand is not None else config.expand
        return lambda cin, cout: InvertedResBlock(cin, cout, expand)
    return ResBlock


def _coord_channels(size: int) -> torch.Tensor:
    """(3, size, size): xx varies along rows, yy along columns, rr their normalised radius; all in [-1, 1]."""
    lin = torch.linspace(-1.0, 1.0, size)
    xx = lin.view(size, 1).expand(size, size)
    yy = lin.view(1, size).expand(size, size)
    rr = torch.sqrt(xx**2 + yy**2)
    return torch.stack([xx, yy, rr / rr.max()])


class CoordConv(nn.Module):
    """Conv over the input plus coordinate channels, and optionally boundary channels from a heatmap."""

    coords: torch.Tensor  # (1, 3, size, size) buffer

    def __init__(self, cin: int, cout: int, size: int, k: int = 1, stride: int = 1, with_boundary: bool = False,
                 bn_relu: bool = False):
        super().__init__()
        self.with_boundary = with_boundary
        extra = 3 + (2 if with_boundary else 0)
        self.conv = nn.Conv2d(cin + extra, cout, k, stride, padding=(k - 1) // 2, bias=True)
        self.bn = nn.BatchNorm2d(cout) if bn_relu else None
        self.register_buffer("coords", _coord_channels(size).unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor, boundary_heatmap: torch.Tensor | None = None) -> torch.Tensor:
        coords = self.coords.expand(x.shape[0], -1, -1, -1).to(x.dtype)
        parts = [x, coords]
        if self.with_boundary:
            assert boundary_heatmap is not None
            mask = (boundary_heatmap.clamp(0, 1) > 0.05).to(x.dtype)
            parts.append(coords[:, :2] * mask)
        x = self.conv(torch.cat(parts, 1))
        if self.bn is not None:
            x = F.relu(self.bn(x))
        return x


class Hourglass(nn.Module):
    """Recursive hourglass; ``coordconv`` sits at the top level only. ``inner_block`` (default ``block``) builds
    every block below this level's resolution."""

    def __init__(self, depth: int, channels: int, size: int | None = None, first: bool = False,
                 block=ResBlock, inner_block=None):
        super().__init__()
        inner = inner_block or block
        if size is not None:
            self.coordconv = CoordConv(channels, channels, size, with_boundary=not first)
        self.up1 = block(channels, channels)
        self.low1 = inner(channels, channels)
        self.low2 = Hourglass(depth - 1, channels, block=inner) if depth > 1 else inner(channels, channels)
        self.low3 = inner(channels, channels)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2, 2))))
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, boundary_heatmap: torch.Tensor | None = None) -> torch.Tensor:
        if hasattr(self, "coordconv"):
            x = self.coordconv(x, boundary_heatmap)
        return self._body(x)


class StarNet(nn.Module):
    """STAR stacked hourglass. ``forward`` returns per-stack lists of fused heatmaps, point maps, edge maps."""

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        scheme: LandmarkScheme = get_scheme(config.scheme)
        n, e, c, hs = scheme.num_points, scheme.num_edges, config.channels, config.heatmap_size
        if config.input_size % 4 or hs % (2**config.depth):
            raise ValueError(f"input size {config.input_size} is not divisible by 4 * 2**depth")
        block = _make_block(config)
        if config.block == "inverted":
            # Light stem: 3x3/2 coord conv, one depthwise-separable conv at half resolution, max-pool.
            half = min(32, c)
            self.pre = nn.Sequential(
                CoordConv(3, half, config.input_size, k=3, stride=2, bn_relu=True),
                nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False), nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.MaxPool2d(2, 2),
                block(c, c),
            )
        else:
            self.pre = nn.Sequential(
                CoordConv(3, 64, config.input_size, k=7, stride=2, bn_relu=True),
                ResBlock(64, 128),
                nn.MaxPool2d(2, 2),
                ResBlock(128, 128),
                ResBlock(128, c),
            )
        s = config.num_stacks
        inner = _make_block(config, inner=True)
        self.hgs = nn.ModuleList([Hourglass(config.depth, c, hs, first=(i == 0), block=block, inner_block=inner)
                                  for i in range(s)])
        self.features = nn.ModuleList(
            [nn.Sequential(block(c, c), ConvBlock(c, c, 1, bn=True, relu=True)) for _ in range(s)])
        self.out_heatmaps = nn.ModuleList([ConvBlock(c, n, 1) for _ in range(s)])
        self.out_pointmaps = nn.ModuleList([ConvBlock(c, n, 1) for _ in range(s)])
        self.out_edgemaps = nn.ModuleList([ConvBlock(c, e, 1) for _ in range(s)])
        self.merge_features = nn.ModuleList([ConvBlock(c, c, 1) for _ in range(s - 1)])
        self.merge_heatmaps = nn.ModuleList([ConvBlock(n, c, 1) for _ in range(s - 1)])
        self.merge_pointmaps = nn.ModuleList([ConvBlock(n, c, 1) for _ in range(s - 1)])
        self.merge_edgemaps = nn.ModuleList([ConvBlock(e, c, 1) for _ in range(s - 1)])
        # Fixed edge->heatmap map (not learned): which edges each landmark lies on.
        m, bias = scheme.edge_matrix()
        self.e2h_transform = nn.Conv2d(e, n, 1, bias=True)
        assert self.e2h_transform.bias is not None  # bias=True
        with torch.no_grad():
            self.e2h_transform.weight.copy_(torch.from_numpy(m).view(n, e, 1, 1))
            self.e2h_transform.bias.copy_(torch.from_numpy(bias))
        self.e2h_transform.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        x = self.pre(x)
        fused_all, points_all, edges_all = [], [], []
        boundary = None
        for i in range(self.config.num_stacks):
            hg = self.hgs[i](x, boundary)
            feat = self.features[i](hg)
            heat = F.relu(F.instance_norm(self.out_heatmaps[i](feat)))
            points = torch.sigmoid(self.out_pointmaps[i](feat))
            edges = torch.sigmoid(self.out_edgemaps[i](feat))
            fused = heat * (self.e2h_transform(edges) * points)
            fused_all.append(fused)
            points_all.append(points)
            edges_all.append(edges)
            if i < self.config.num_stacks - 1:
                x = x + self.merge_features[i](feat) + self.merge_heatmaps[i](heat) \
                    + self.merge_pointmaps[i](points) + self.merge_edgemaps[i](edges)
                boundary = heat[:, -1:]
        return fused_all, points_all, edges_all


def normalize_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float BGR in 0..255 (the exported graph's input) -> [-1, 1], the network's input convention.

    The one definition of the input normalisation: the exported graph (:class:`StarInference`), training and
    evaluation all call it."""
    return (images - 127.5) / 127.5


@lru_cache(maxsize=8)
def _moment_grid_np(h: int, w: int) -> np.ndarray:
    """(H W, 6) float32 per cell: 1, x, y, x², x y, y² on the [-1, 1] grid (row-major cells, x along columns);
    built once per heatmap size (training decodes every batch). Not to be modified."""
    gy, gx = (g.ravel() for g in np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij"))
    return np.stack([np.ones_like(gx), gx, gy, gx * gx, gx * gy, gy * gy], 1).astype(np.float32)


def _moment_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """:func:`_moment_grid_np` as a tensor on ``device``. From numpy, so that an exported graph holds it as one
    constant instead of computing it from the input's shape."""
    return torch.as_tensor(_moment_grid_np(h, w), device=device)


def decode_heatmaps_torch(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`star_track.decode.decode_heatmaps` (same math; exportable to ONNX).

    heatmaps (B, N, H, W) -> mean (B, N, 2) as (x, y) in [-1, 1], covariance (B, N, 2, 2).

    Written as moments: one matrix product of the flattened maps with the grid's (1, x, y, x², x y, y²) gives
    every sum the decoding needs, so the exported graph has three operations over the full maps (clamp, that
    product and the sum of squares) instead of some twenty elementwise ones, about a tenth of the default
    model's CPU time. The central moments follow from the raw ones (Σ p (x - m)² = Σ p x² - 2 m Σ p x + m² Σ p);
    in float32 that costs nothing measurable at these spreads (the covariance is 1e-3..1e-1 of the grid's
    range, and the tests hold it to the reference's 1e-5).
    """
    b, n, h, w = heatmaps.shape
    hm = heatmaps.float().clamp_min(0).reshape(b, n, h * w)
    moments = hm @ _moment_grid(h, w, hm.device)  # (B, N, 6) raw sums
    total = moments[..., :1].clamp_min(1e-6)
    m = moments / total  # Σp, E[x], E[y], E[x²], E[xy], E[y²] of p = hm / total
    s, mean = m[..., :1], m[..., 1:3].reshape(b, n, 2)  # reshape: the exported graph keeps N static
    v1 = s + 1e-5
    v2 = (hm * hm).sum(-1, keepdim=True) / (total * total) + 1e-5  # Σ p²
    denom = v1 - v2 / v1  # unbiased weighted covariance
    outer = mean[..., [0, 0, 1]] * mean[..., [0, 1, 1]]  # mx², mx my, my²
    cxx_xy_yy = (m[..., 3:] - (2 - s) * outer) / denom
    cov = cxx_xy_yy[..., [0, 1, 1, 2]].reshape(b, n, 2, 2)
    return mean, cov


def eig2x2_torch(cov: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form eigen-decomposition of symmetric 2x2 matrices (differentiable, no LAPACK).

    Returns eigenvalues (..., 2) ascending and eigenvectors (..., 2, 2) as columns, like ``eigh``.
    """
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    half_tr = (a + c) / 2
    disc = torch.sqrt(((a - c) / 2) ** 2 + b**2 + eps)
    lam = torch.stack([half_tr - disc, half_tr + disc], -1)
    # Direction of the major axis. At isotropy (b = 0, a = c) it is undefined and atan2's gradient is 0/0:
    # the double-where keeps that gradient finite (zero) instead of NaN.
    y, x = 2 * b, a - c
    ok = (x * x + y * y) > 1e-20
    theta = torch.where(ok, 0.5 * torch.atan2(torch.where(ok, y, 0.0), torch.where(ok, x, 1.0)), 0.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    v_minor = torch.stack([-sin, cos], -1)
    v_major = torch.stack([cos, sin], -1)
    return lam, torch.stack([v_minor, v_major], -1)


class StarInference(nn.Module):
    """Network + in-graph decoding: uint8-range BGR crops (B, 3, H, W) float -> landmarks, covariance.

    The exported ONNX graph is this module, so every engine shares the runtime's input convention.
    """

    def __init__(self, net: StarNet, with_heatmaps: bool = False):
        super().__init__()
        self.net = net
        self.with_heatmaps = with_heatmaps

    def forward(self, images: torch.Tensor):
        fused, _, _ = self.net(normalize_input(images))
        mean, cov = decode_heatmaps_torch(fused[-1])
        if self.with_heatmaps:
            return mean, cov, fused[-1]
        return mean, cov


def count_parameters(net: nn.Module) -> int:
    """Learned parameters (the fixed E2H map excluded)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
