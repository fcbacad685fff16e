"""Real-clip jitter of star-track's smoothers beside MediaPipe's Face Mesh model with MediaPipe's own filter.

Metric (``shared/docs/PEERS.md``): the mean |second difference| of the 51 inner points (17-67) over the
inter-ocular distance (outer eye corners 36 / 45) of the same frame. Real motion counts too, so only systems on
the same clip compare. Speech kept: the inner-lip gap (points 62-66 over IOD) of each smoothed output beside the
unsmoothed one (correlation, ratio of standard deviations); blinks kept: on the clips with hand-labelled blinks
(``tests/data/blinks_*.json``) the depth of the eye-openness dip (median open minus mean over the closed frames)
over the unsmoothed output's.

The peer: MediaPipe's Face Mesh model (:class:`benchmarks.peer.PeerFaceMesh`, 468 points) run the way its graph
runs it: each frame's crop is the previous frame's landmark box, squared on its long side, scaled 1.5x and
rotated so the eye corners 33 / 263 are level (the first frame starts from star-track's landmarks), then its
LandmarksSmoothingCalculator's One Euro filter (:class:`MediaPipeOneEuro`: min_cutoff 0.05, beta 80,
d_cutoff 1, per coordinate, speed in object scales per second), then PEERS.md's 468 -> 68 vertex map.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from .common import REPO
from .synthetic import SCHEME

MESH_TO_68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300, 168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87])
"""One Face Mesh vertex per 300W-68 landmark (``shared/docs/PEERS.md``)."""
INNER = np.r_[17:68]
LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
BLINK_LABELS = REPO / "tests" / "data"


def jitter(points: np.ndarray) -> float:
    """Mean |second difference| of the inner points over IOD (frames with a face on all three)."""
    d2 = points[2:] - 2 * points[1:-1] + points[:-2]
    e = np.linalg.norm(d2[:, INNER], axis=-1) / SCHEME.inter_ocular(points[1:-1])[:, None]
    return float(np.nanmean(e))


def lip_gap(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, 62] - points[:, 66], axis=-1) / SCHEME.inter_ocular(points)


def openness(points: np.ndarray) -> np.ndarray:
    lids = [np.linalg.norm(points[:, u] - points[:, l], axis=-1) for u, l in LIDS]
    return np.mean(lids, axis=0) / SCHEME.inter_ocular(points)


def speech_kept(out: np.ndarray, raw: np.ndarray) -> tuple[float, float]:
    """(correlation, SD ratio) of the inner-lip gap of ``out`` with the unsmoothed ``raw``'s."""
    g, g0 = lip_gap(out), lip_gap(raw)
    ok = np.isfinite(g) & np.isfinite(g0)
    return float(np.corrcoef(g[ok], g0[ok])[0, 1]), float(np.std(g[ok]) / np.std(g0[ok]))


def blink_labels(clip: str) -> list[tuple[int, int]] | None:
    """Hand-labelled closed-eye frame ranges of a clip (None if it has none)."""
    path = BLINK_LABELS / f"blinks_{Path(clip).stem}.json"
    return [tuple(r) for r in json.loads(path.read_text())["closed_frames"]] if path.is_file() else None


def blink_depth_kept(out: np.ndarray, raw: np.ndarray, closed: list[tuple[int, int]]) -> float:
    """Depth of the eye-openness dip of ``out`` over ``raw``'s at the labelled closed frames."""
    mask = np.zeros(len(raw), bool)
    for a, b in closed:
        mask[a:b + 1] = True

    def depth(x: np.ndarray) -> float:
        o = openness(x)
        return float(np.nanmedian(o[~mask]) - np.nanmean(o[mask]))
    return depth(out) / depth(raw)


def blink_delays(out: np.ndarray, raw: np.ndarray, closed: list[tuple[int, int]], margin: int = 6) -> list[float]:
    """Per labelled blink, the time shift (frames) that best aligns ``out``'s eye openness with ``raw``'s over the
    blink's frames +-``margin`` (:func:`benchmarks.nonrigid.shift_delay`): how late a smoother follows a real
    blink."""
    from .nonrigid import shift_delay

    o, o_raw = openness(out), openness(raw)
    return [shift_delay(o[max(0, a - margin):b + margin + 1], o_raw[max(0, a - margin):b + margin + 1])
            for a, b in closed]


class MediaPipeOneEuro:
    """MediaPipe's landmark One Euro filter: per coordinate, the derivative from the last *raw* value, speed in
    object scales ((w + h) / 2 of the landmark box) per second."""

    def __init__(self, min_cutoff: float = 0.05, beta: float = 80.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.raw: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / dt)

    def update(self, value: np.ndarray, dt: float, object_scale: float) -> np.ndarray:
        if self.x is None or self.raw is None or self.dx is None:
            self.x, self.raw, self.dx = value.copy(), value.copy(), np.zeros_like(value)
            return value.copy()
        d = (value - self.raw) / object_scale / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * d + (1 - a_d) * self.dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.dx), dt)
        self.x = a * value + (1 - a) * self.x
        self.raw = value.copy()
        return self.x.copy()


def mesh_roi(points: np.ndarray, eyes: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """(centre, side, angle) of the crop MediaPipe derives from a landmark set: box centre, 1.5 x the long side,
    rotated so the ``eyes`` points are level."""
    lo, hi = points.min(0), points.max(0)
    v = points[eyes[1]] - points[eyes[0]]
    return (lo + hi) / 2, 1.5 * float(np.max(hi - lo)), math.atan2(float(v[1]), float(v[0]))


def run_peer(frames: list[np.ndarray], start68: np.ndarray, fps: float, threads: int = 1) -> np.ndarray:
    """MediaPipe Face Mesh model + its One Euro filter on ``frames``, mapped to 68 points (T, 68, 2)."""
    from .peer import PeerFaceMesh

    mesh = PeerFaceMesh(threads=threads)
    size = mesh.size
    roi = mesh_roi(start68, (36, 45))
    filt = MediaPipeOneEuro()
    out = np.full((len(frames), 68, 2), np.nan)
    for t, frame in enumerate(frames):
        centre, side, ang = roi
        c, s = math.cos(-ang), math.sin(-ang)
        k = size / side
        lin = k * np.array([[c, -s], [s, c]])
        m = np.hstack([lin, (size / 2 - lin @ centre)[:, None]])
        crop = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        pts = (mesh.run(crop) - size / 2) @ np.linalg.inv(lin).T + centre  # back to frame pixels
        roi = mesh_roi(pts, (33, 263))
        scale = float(np.mean(pts.max(0) - pts.min(0)))
        out[t] = filt.update(pts[MESH_TO_68], 1.0 / fps, scale)
    return out
