"""Calibrated landmark uncertainty: the decoded STAR covariance -> the covariance of the real landmark error.

The heatmap's spread is not the landmark's error: even a perfect prediction is a blob as wide as the training
target's Gaussian, so the raw STAR covariance is several times too large and nearly round. A model's metadata
(:attr:`ModelMeta.uncertainty`, fitted on held-out faces by ``python -m train calibrate-uncertainty``) holds a
monotone map of the covariance's eigenvalues per landmark group, in the model's [-1, 1] crop units::

    λ_cal = exp(a_g) · λ_raw ** b_g        (same eigenvectors: the direction of the spread is kept)

so an ellipse from the calibrated covariance holds the true point as often as a Gaussian of that covariance
would (1-σ 39 %, 2-σ 86 %, 3-σ 99 %, measured by ``python -m benchmarks.uncertainty``).

Models without a calibration (e.g. imported checkpoints) keep the raw covariance (the identity map), and the
tracker warns once (:class:`UncalibratedUncertaintyWarning`).

Face score
  The tracker's face confidence is defined on the raw STAR covariance: for landmark i with covariance Σᵢ in
  crop units, σᵢ = det(Σᵢ)^¼ is its geometric-mean standard deviation; with u = medianᵢ σᵢ
  (:func:`landmark_spread`) the score is ``1 / (1 + (u / uncertainty_half)⁴)`` (:func:`landmark_score`): 0.5
  when the median landmark's spread is ``uncertainty_half`` (default 0.28, i.e. 14 % of the crop side).
  Measured with the default model (``python -m benchmarks.uncertainty``): u is 0.16 / 0.18 / 0.22 (5th / 50th /
  95th percentile) on the held-out face crops, scores 0.74 to 0.90; on patches of the same photos away from the
  labelled faces u is 0.27 / 0.40 / 0.59, scores 0.54 / 0.20 / 0.05.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CALIBRATION_VERSION = 1
LAMBDA_FLOOR = 1e-10  # crop units²; eigenvalues of a degenerate heatmap are clipped here before the power map


class UncalibratedUncertaintyWarning(UserWarning):
    """The model has no uncertainty calibration: ``Face.covariance`` is the raw (too large) STAR covariance."""


def uncalibrated_note(model_name: str) -> str:
    """The one-line text of :class:`UncalibratedUncertaintyWarning` for ``model_name``."""
    return (f"model {model_name!r} has no uncertainty calibration: Face.covariance is the raw STAR covariance (too "
            "large); fit one with `python -m train calibrate-uncertainty MODEL.onnx` (smoothing='face' measures the "
            "noise level itself; with smoothing='kalman' use r_scale=0.1)")


@dataclass(frozen=True)
class UncertaintyCalibration:
    """Per-landmark eigenvalue map ``λ_cal = exp(a) λ_raw^b``; the identity when ``a = 0, b = 1``.

    Args:
        log_scale: (N,) ``a`` per landmark (crop units²).
        power: (N,) ``b`` per landmark.
        fitted: False for the identity fallback of an uncalibrated model.
    """

    log_scale: np.ndarray
    power: np.ndarray
    fitted: bool = True

    @classmethod
    def identity(cls, num_points: int) -> "UncertaintyCalibration":
        """The raw STAR covariance unchanged (models without a calibration)."""
        return cls(np.zeros(num_points), np.ones(num_points), fitted=False)

    @classmethod
    def from_groups(cls, groups: dict[str, list[int]], params: dict[str, tuple[float, float]],
                    num_points: int) -> "UncertaintyCalibration":
        """Per-group (a, b) expanded to every landmark of the group."""
        a, b = np.zeros(num_points), np.ones(num_points)
        for name, idx in groups.items():
            a[list(idx)], b[list(idx)] = params[name]
        return cls(a, b)

    @classmethod
    def from_meta(cls, meta, num_points: int) -> "UncertaintyCalibration":
        """The calibration stored in a :class:`~star_track.model.meta.ModelMeta` (identity when absent)."""
        d = getattr(meta, "uncertainty", None) or {}
        if d.get("version") != CALIBRATION_VERSION or "groups" not in d:
            return cls.identity(num_points)
        params = {k: (float(v[0]), float(v[1])) for k, v in d["params"].items()}
        return cls.from_groups(d["groups"], params, num_points)

    def apply(self, cov: np.ndarray) -> np.ndarray:
        """Calibrate covariances (..., N, 2, 2) in crop units (non-finite entries stay non-finite)."""
        c = np.asarray(cov, np.float64)
        if not self.fitted:
            return c.copy()
        return map_eigenvalues(c, np.exp(self.log_scale), self.power)


def map_eigenvalues(cov: np.ndarray, factor: np.ndarray, power: np.ndarray) -> np.ndarray:
    """``V diag(factor λ^power) Vᵀ`` of symmetric 2x2 covariances (..., N, 2, 2) (factor, power: (N,)), with
    λ clipped at :data:`LAMBDA_FLOOR`; non-finite entries stay non-finite.

    Closed form, no LAPACK (the per-frame path counts numpy calls): with eigenvalues l1 <= l2 and the
    projector P2 = (Σ - l1 I) / (l2 - l1) onto the larger one's eigenvector, the map is
    f(l1) I + (f(l2) - f(l1)) P2 (for a round Σ, P2's term is 0)."""
    a, d = cov[..., 0, 0], cov[..., 1, 1]
    b = 0.5 * (cov[..., 0, 1] + cov[..., 1, 0])
    m, r = 0.5 * (a + d), np.hypot(0.5 * (a - d), b)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = factor * np.maximum(m - r, LAMBDA_FLOOR) ** power
        f2 = factor * np.maximum(m + r, LAMBDA_FLOOR) ** power
        g = np.where(r > 0, (f2 - f1) / (2 * r), 0.0)  # (f(l2) - f(l1)) / (l2 - l1)
    out = np.empty(np.shape(a) + (2, 2))
    l1 = m - r
    out[..., 0, 0] = f1 + g * (a - l1)
    out[..., 1, 1] = f1 + g * (d - l1)
    out[..., 0, 1] = out[..., 1, 0] = g * b
    return out


def expected_error(points: np.ndarray, cov: np.ndarray, eye_corners: tuple[int, int]) -> float:
    """Predicted NME of a face: the mean expected landmark distance under the calibrated covariances, over the
    distance between the outer eye corners (the NME the benchmarks report), as a fraction.

    E|e| for a 2-D Gaussian is approximated by ``sqrt(π tr Σ) / 2`` (exact for round covariances).
    """
    p = np.asarray(points, np.float64)
    c = np.asarray(cov, np.float64)
    iod = float(np.hypot(*(p[eye_corners[1]] - p[eye_corners[0]])))
    tr = np.maximum(c[:, 0, 0] + c[:, 1, 1], 0.0)  # np.clip costs several calls more
    e = float((np.sqrt(math.pi * tr) / 2).mean())
    return e / max(iod, 1e-6) if math.isfinite(e) else float("nan")


def landmark_spread(cov_normalized: np.ndarray) -> np.ndarray:
    """u (B,): the median over landmarks of det(Σᵢ)^¼, from covariances (B, N, 2, 2) in [-1, 1] crop units."""
    c = np.asarray(cov_normalized, np.float64)
    det = np.maximum(c[..., 0, 0] * c[..., 1, 1] - c[..., 0, 1] * c[..., 1, 0], 0.0)
    # det^¼ is monotone: the median of the dets picks the same landmarks (one partition, no full sort);
    # NaNs sort last, as the +inf spread a non-finite covariance counts as.
    n = det.shape[-1]
    mid = np.partition(det, [(n - 1) // 2, n // 2], axis=-1)[..., (n - 1) // 2:n // 2 + 1] ** 0.25
    u = 0.5 * (mid[..., 0] + mid[..., -1])  # the middle one twice for odd N
    return np.where(np.isnan(u), np.inf, u)


def landmark_score(cov_normalized: np.ndarray, uncertainty_half: float = 0.28) -> np.ndarray:
    """Face confidence (B,) from covariances (B, N, 2, 2) in [-1, 1] crop units (see the module docs)."""
    return 1.0 / (1.0 + (landmark_spread(cov_normalized) / uncertainty_half) ** 4)
