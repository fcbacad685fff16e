"""A still face that opens its mouth and blinks: a non-rigid test sequence with known true landmarks.

The canvas-at-rest image of a :class:`~benchmarks.synthetic.FaceScene` is warped piecewise-affinely (the rest
shape's Delaunay triangles plus fixed points on the canvas border, each triangle mapped exactly onto its moved
self), so the true landmarks of every frame are the moved ones. Two movements, on 300W-68 points:

- **mouth**: the jaw drops by 0.25 inter-ocular distances (IOD) over 4 frames, holds, and closes over 4 frames:
  lower lip (outer and inner) and chin move down along the face's own vertical, mouth corners by 40 %;
- **blink** of the image-left eye: the upper lid closes to 15 % of its gap over 3 frames, holds 2 frames and
  reopens over 3 frames (the right eye stays open: a wink, which no global shape mode explains).

Then the camera model of :mod:`benchmarks.synthetic` (blur, pixel noise) on every frame.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .synthetic import SCHEME, FaceScene, Sequence

MOUTH_DROP = 0.25
"""Jaw drop at full mouth opening, in IOD."""
EYE_CLOSE = 0.85
"""Fraction of the upper-lid-to-lower-lid gap the upper lid travels at full closure."""
LID_PAIRS = ((37, 41), (38, 40))
"""(upper, lower) lid points of the blinking eye (image-left, 300W-68)."""
LIP_GAP = (62, 66)
"""Inner-lip middle points (upper, lower): the mouth-opening signal."""


def ramp(t: float, start: float, rise: float, hold: float, fall: float) -> float:
    """0 -> 1 linearly over ``rise`` frames from ``start``, 1 for ``hold``, back to 0 over ``fall`` (frames)."""
    if t <= start:
        return 0.0
    if t < start + rise:
        return (t - start) / rise
    if t <= start + rise + hold:
        return 1.0
    return max(0.0, 1.0 - (t - start - rise - hold) / fall)


def schedule(frames: int) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """(start, rise, hold, fall) in frames of the mouth opening and of the blink for a ``frames``-long clip."""
    return (0.25 * frames, 4.0, 0.25 * frames, 4.0), (0.55 * frames, 3.0, 2.0, 3.0)


def displacement(base: np.ndarray, mouth: float, eye: float) -> np.ndarray:
    """(68, 2) landmark displacements for an opening ``mouth`` and a closing ``eye`` in [0, 1]."""
    d = np.zeros_like(base)
    iod = float(SCHEME.inter_ocular(base))
    across = base[45] - base[36]
    down = np.array([-across[1], across[0]]) / np.linalg.norm(across)  # the face's own vertical (image y down)
    drop = MOUTH_DROP * iod * mouth
    for i, w in {**{i: 1.0 for i in (56, 57, 58, 65, 66, 67)}, 55: 0.8, 59: 0.8,
                 48: 0.4, 54: 0.4, 60: 0.4, 64: 0.4}.items():
        d[i] += w * drop * down
    for i in range(4, 13):  # chin follows the jaw
        d[i] += drop * max(0.0, 1.0 - abs(i - 8) / 5.0) * down
    for up, lo in LID_PAIRS:
        d[up] += EYE_CLOSE * eye * (base[lo] - base[up])
    return d


class Warper:
    """Piecewise-affine warp of one canvas-at-rest image, triangles from the rest landmarks."""

    def __init__(self, image: np.ndarray, rest: np.ndarray):
        from scipy.spatial import Delaunay

        h, w = image.shape[:2]
        border = np.array([[x, y] for x in np.linspace(0, w - 1, 5) for y in np.linspace(0, h - 1, 5)
                           if x in (0, w - 1) or y in (0, h - 1)])
        lo, hi = rest.min(0), rest.max(0)
        c, r = (lo + hi) / 2, (hi - lo) * 0.75  # a fixed ring around the face keeps the warp local
        ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ring = c + r * np.stack([np.cos(ang), np.sin(ang)], 1)
        self.rest = np.concatenate([rest, ring, border])
        self.tri = Delaunay(self.rest).simplices
        self.image = image
        self.n = len(rest)

    def warp(self, moved: np.ndarray) -> np.ndarray:
        """The image with each rest landmark moved to ``moved`` (N, 2)."""
        dst = np.concatenate([moved, self.rest[self.n:]])
        h, w = self.image.shape[:2]
        index = np.full((h, w), -1, np.int32)
        for k, t in enumerate(self.tri):
            cv2.fillConvexPoly(index, np.round(dst[t] * 16).astype(np.int32), k, cv2.LINE_8, 4)
        # Per triangle: the affine map destination -> source (exact at the three corners).
        ones = np.ones((len(self.tri), 3, 1))
        a = np.linalg.solve(np.concatenate([dst[self.tri], ones], 2), self.rest[self.tri])  # (T, 3, 2)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        tri = np.maximum(index, 0)
        mx = (a[tri, 0, 0] * xs + a[tri, 1, 0] * ys + a[tri, 2, 0]).astype(np.float32)
        my = (a[tri, 0, 1] * xs + a[tri, 1, 1] * ys + a[tri, 2, 1]).astype(np.float32)
        mx[index < 0], my[index < 0] = xs[index < 0], ys[index < 0]
        return cv2.remap(self.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def render_nonrigid(scene: FaceScene, frames: int, fps: float, rng: np.random.Generator,
                    noise_sd: float = 2.5, blur_sd: tuple[float, float] = (0.3, 0.7)) -> Sequence:
    """The ``expression`` sequence: a still face that opens its mouth and blinks (see the module docs)."""
    rest_img = cv2.warpAffine(scene.image, np.hstack([np.eye(2), scene.shift[:, None]]), scene.size,
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    warper = Warper(rest_img, scene.base)
    mouth_s, eye_s = schedule(frames)

    def truth_at(t: float) -> np.ndarray:
        f = t * fps
        return scene.base + displacement(scene.base, ramp(f, *mouth_s), ramp(f, *eye_s))

    out, truth = [], []
    for i in range(frames):
        pts = truth_at(i / fps)
        img = warper.warp(pts)
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*blur_sd)))
        img = img.astype(np.float32) + rng.normal(0.0, noise_sd, img.shape).astype(np.float32)
        out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
        truth.append(pts)
    linear = np.tile(np.eye(2), (frames, 1, 1))
    return Sequence("expression", out, np.stack(truth), truth_at, linear, fps)


def gaps(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eye gap, inner-lip gap) of (T, 68, 2) points, each (T,) in IOD: mean upper-to-lower lid distance of the
    blinking eye and the distance of the inner-lip middle points."""
    iod = SCHEME.inter_ocular(points)
    eye = np.mean([np.linalg.norm(points[:, u] - points[:, l], axis=-1) for u, l in LID_PAIRS], axis=0)
    lip = np.linalg.norm(points[:, LIP_GAP[0]] - points[:, LIP_GAP[1]], axis=-1)
    return eye / iod, lip / iod


def shift_delay(out: np.ndarray, ref: np.ndarray, max_frames: float = 6.0) -> float:
    """Shift tau (frames, 0.1 steps in [-2, max_frames]) minimising RMS(out(t) - ref(t - tau)) (linear
    interpolation; the means removed)."""
    t = np.arange(len(ref), dtype=np.float64)
    ok = np.isfinite(out) & np.isfinite(ref)
    best = (np.inf, math.nan)
    for tau in np.arange(-2.0, max_frames + 1e-9, 0.1):
        r = out[ok] - np.interp(t[ok] - tau, t[ok], ref[ok])
        cost = float(np.mean((r - r.mean()) ** 2))
        if cost < best[0]:
            best = (cost, float(tau))
    return best[1]


def follow(out: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """How a smoother follows the mouth opening and the blink, against the unsmoothed output ``raw``.

    Per event (mouth: inner-lip gap, blink: lid gap) over its frames +-6: ``<event>_delay`` = the time shift
    (frames) that best aligns the smoothed gap with the raw one, ``<event>_amplitude`` = the smoothed gap's
    range over the raw one's (1 = the whole movement kept).
    """
    frames = len(raw)
    res = {}
    for name, k, (s, r, h, f) in zip(("mouth", "blink"), (1, 0), schedule(frames)):
        lo, hi = max(0, int(s) - 6), min(frames, int(math.ceil(s + r + h + f)) + 6)
        g_raw, g_out = gaps(raw)[k][lo:hi], gaps(out)[k][lo:hi]
        res[f"{name}_delay"] = shift_delay(g_out, g_raw)
        res[f"{name}_amplitude"] = float(np.ptp(g_out) / np.ptp(g_raw))
    return res
