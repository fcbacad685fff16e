"""Augmentation (STAR_SPEC section 4), reproducible from a numpy Generator.

Geometric: horizontal flip (with the scheme's flip pairs) and a random similarity about the crop centre.
Photometric: occlusion, box blur, gamma, noise blend, grayscale, plus mild brightness/contrast jitter.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    shift_sd: float = 0.05  # fraction of the crop side per axis
    rotate_sd_deg: float = 18.0
    scale_sd: float = 0.1
    occlusion: float = 0.4
    blur: float = 0.3
    gamma: float = 0.2
    noise: float = 0.2
    gray: float = 0.2
    jitter: float = 0.3  # brightness/contrast (not in the reference; helps small datasets)


@dataclass(frozen=True)
class GeometricDraw:
    """One random draw of the geometric augmentation, applied by the dataset when it builds the crop."""

    flip: bool
    shift: tuple[float, float]  # fraction of the crop side
    angle: float  # radians
    scale: float


def draw_geometry(rng: np.random.Generator, cfg: AugmentConfig) -> GeometricDraw:
    return GeometricDraw(
        flip=bool(rng.random() < cfg.flip),
        shift=(float(rng.normal(0, cfg.shift_sd)), float(rng.normal(0, cfg.shift_sd))),
        angle=float(np.deg2rad(rng.normal(0, cfg.rotate_sd_deg))),
        scale=float(np.clip(rng.normal(1.0, cfg.scale_sd), 0.7, 1.3)),
    )


def photometric(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Apply the photometric augmentations to a uint8 BGR crop."""
    img = img.copy()
    h, w = img.shape[:2]
    if rng.random() < cfg.occlusion:
        ow, oh = int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.4) * h)
        x, y = int(rng.uniform(0, w - ow)), int(rng.uniform(0, h - oh))
        img[y:y + oh, x:x + ow] = 0
    if rng.random() < cfg.blur:
        k = int(rng.integers(2, 5))
        img = cv2.blur(img, (k, k))
    if rng.random() < cfg.jitter:
        alpha, beta = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
        img = np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)
    if rng.random() < cfg.gamma:
        g = rng.uniform(0.25, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, 4.0)
        lut = np.clip(((np.arange(256) / 255.0) ** g) * 255, 0, 255).astype(np.uint8)
        img = cv2.LUT(img, lut)
    if rng.random() < cfg.noise:
        alpha = rng.uniform(0, 0.5)
        noise = rng.integers(0, 256, img.shape, dtype=np.uint8)
        img = cv2.addWeighted(img, 1 - alpha, noise, alpha, 0)
    if rng.random() < cfg.gray:
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        img = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    return img
