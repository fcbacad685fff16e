"""Evaluation metrics: NME with the dataset's normaliser, FR@t, AUC@t, and the CED curve."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from star_track.model.schemes import LandmarkScheme


def nme_per_face(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme, norm: str = "inter_ocular") -> np.ndarray:
    """Mean point-to-point error over landmarks divided by the normaliser, per face. (B, N, 2) -> (B,)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if norm == "inter_ocular":
        d = scheme.inter_ocular(gt)
    elif norm == "inter_pupil":
        d = scheme.inter_pupil(gt)
    else:
        raise ValueError(f"unknown normaliser {norm!r}")
    return np.linalg.norm(pred - gt, axis=-1).mean(-1) / d


def failure_rate(nme: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of faces with NME above ``threshold`` (missed faces should be passed as inf)."""
    return float(np.mean(np.asarray(nme) > threshold))


def ced_curve(nme: np.ndarray, threshold: float = 0.1, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x in [0, threshold], fraction of faces with NME <= x."""
    xs = np.linspace(0, threshold, steps)
    nme = np.sort(np.asarray(nme))
    return xs, np.searchsorted(nme, xs, side="right") / len(nme)


def auc(nme: np.ndarray, threshold: float = 0.1) -> float:
    """Area under the CED curve on [0, threshold] divided by threshold (trapezoid rule, 1001 samples)."""
    xs, ys = ced_curve(nme, threshold)
    return float(np.trapezoid(ys, xs) / threshold)


def summarize(nme: np.ndarray, threshold: float = 0.1) -> dict[str, float]:
    finite = np.asarray(nme)[np.isfinite(nme)]
    return {"nme": float(np.mean(finite)) if len(finite) else float("nan"),
            f"fr@{threshold:g}": failure_rate(nme, threshold), f"auc@{threshold:g}": auc(nme, threshold),
            "count": int(len(nme))}


def plot_ced(curves: dict[str, np.ndarray], path: str | Path, threshold: float = 0.1) -> Path:
    """Write a CED plot (PNG) with one curve per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, nme in curves.items():
        xs, ys = ced_curve(nme, threshold)
        ax.plot(xs, ys, label=f"{name} (AUC {auc(nme, threshold):.3f})")
    ax.set_xlabel("NME"), ax.set_ylabel("fraction of faces"), ax.set_xlim(0, threshold), ax.set_ylim(0, 1)
    ax.grid(alpha=0.3), ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
