"""Video sequences with known true landmark tracks, rendered from real annotated held-out photos.

A face photo is scaled so its inter-ocular distance is ``iod`` pixels and centred in a ``size`` canvas, then
moved along a smooth affine path (translation, roll, scale) with a brightness change; the true landmarks are
the annotated ones mapped by the same affine. Every frame then goes through a simple camera model (slight
Gaussian blur of random strength and Gaussian pixel noise), so even a still face gives a new noisy image each
frame. The path is an analytic function of time, so the truth is known at any (also fractional) frame.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from star_track.model.schemes import get_scheme

SCHEME = get_scheme("300w68")
Path = Callable[[float], tuple[float, float, float, float, float]]
"""t (seconds) -> (dx, dy in inter-ocular units, roll in degrees, scale factor, brightness gain)."""


def still(t: float) -> tuple[float, float, float, float, float]:
    return 0.0, 0.0, 0.0, 1.0, 1.0


def sway(freq: float, amp: float, roll_deg: float) -> Path:
    """Smooth head motion: sinusoids of incommensurate frequencies in x, y, roll, scale and brightness."""
    def path(t: float) -> tuple[float, float, float, float, float]:
        w = 2 * math.pi * freq * t
        return (amp * math.sin(w), 0.5 * amp * math.sin(0.7 * w), roll_deg * math.sin(0.8 * w + 0.5),
                1.0 + 0.08 * math.sin(0.6 * w), 1.0 + 0.15 * math.sin(0.5 * w + 1.0))
    return path


def step(at: float, dx: float, dy: float) -> Path:
    """Still, then a sudden shift by (dx, dy) inter-ocular distances at time ``at`` (a cut / fast jerk)."""
    def path(t: float) -> tuple[float, float, float, float, float]:
        return (dx, dy, 0.0, 1.0, 1.0) if t >= at - 1e-9 else (0.0, 0.0, 0.0, 1.0, 1.0)
    return path


@dataclass
class Sequence:
    """Rendered frames and the true landmarks per frame."""

    name: str
    frames: list[np.ndarray]
    truth: np.ndarray
    """(T, 68, 2) true landmarks in frame pixels."""
    truth_at: Callable[[float], np.ndarray]
    """True landmarks at any time (seconds), for sub-frame delay estimates."""
    linear: np.ndarray
    """(T, 2, 2) linear part of the path at each frame (maps face-frame offsets to frame pixels)."""
    fps: float


class FaceScene:
    """One annotated face placed in a canvas, ready to be moved along paths."""

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray, size: tuple[int, int] = (640, 480),
                 iod: float = 90.0):
        pts = np.asarray(landmarks, np.float64)
        k = iod / float(SCHEME.inter_ocular(pts))
        # Pre-scale with area averaging (no aliasing); pixel centres: x' = (x + 0.5) k - 0.5.
        self.image = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
        small = (pts + 0.5) * k - 0.5
        self.size = size
        self.iod = iod
        self.center = np.array([(size[0] - 1) / 2, (size[1] - 1) / 2])
        self.base = small - small.mean(0) + self.center  # landmarks at rest, centred in the canvas
        self.shift = self.center - small.mean(0)

    def affine(self, dx: float, dy: float, roll_deg: float, scale: float) -> np.ndarray:
        """2x3 canvas-at-rest -> frame matrix for one path state (about the canvas centre)."""
        a = math.radians(roll_deg)
        lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        t = self.center + np.array([dx, dy]) * self.iod - lin @ self.center
        return np.hstack([lin, t[:, None]])

    def render(self, name: str, path: Path, frames: int, fps: float, rng: np.random.Generator,
               noise_sd: float = 2.5, blur_sd: tuple[float, float] = (0.3, 0.7)) -> Sequence:
        """Frames along ``path`` through the camera model, with their true landmarks."""
        out, truth, linear = [], [], []
        for i in range(frames):
            dx, dy, roll, scale, gain = path(i / fps)
            m = self.affine(dx, dy, roll, scale)
            full = m.copy()
            full[:, 2] += m[:, :2] @ self.shift  # photo (pre-scaled) -> canvas at rest -> frame
            img = cv2.warpAffine(self.image, full, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*blur_sd)))
            img = img.astype(np.float32) * gain + rng.normal(0.0, noise_sd, img.shape).astype(np.float32)
            out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
            truth.append(self.base @ m[:, :2].T + m[:, 2])
            linear.append(m[:, :2])

        def truth_at(t: float) -> np.ndarray:
            m = self.affine(*path(t)[:4])
            return self.base @ m[:, :2].T + m[:, 2]

        return Sequence(name, out, np.stack(truth), truth_at, np.stack(linear), fps)


def standard_sequences(scene: FaceScene, frames: int = 60, fps: float = 30.0, seed: int = 0) -> list[Sequence]:
    """The four benchmark sequences for one face: still, slow sway, fast sway, step."""
    rng = np.random.default_rng(seed)
    half = frames // 2
    return [scene.render("still", still, frames, fps, rng),
            scene.render("sway", sway(0.5, 0.5, 6.0), frames, fps, rng),
            scene.render("fast", sway(1.5, 0.6, 10.0), frames, fps, rng),
            scene.render("step", step(half / fps, 0.4, 0.2), frames, fps, rng)]
