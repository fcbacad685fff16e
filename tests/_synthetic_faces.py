"""Synthetic 68-point faces for the convention tests: one random shape, rotated, scaled and moved per face."""
import numpy as np


def random_faces(n: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(n, 68, 2) faces in pixels; outer eye corners 36 / 45 at distance 2 before scaling (20..80 x)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (68, 2))
    base[36], base[45] = (-1, 0), (1, 0)
    out = []
    for _ in range(n):
        a, s, t = rng.uniform(-0.6, 0.6), rng.uniform(20, 80), rng.uniform(100, 300, 2)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append((base + rng.normal(0, noise, base.shape)) @ r.T * s + t)
    return np.stack(out)
