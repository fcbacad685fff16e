"""Fit the uncertainty calibration (:mod:`star_track.uncertainty`) of an exported model on held-out faces.

1. :func:`collect` runs the model on every held-out face framed as the tracker frames a followed face: a crop
   from the true landmarks (as from the previous frame's), then the crop re-framed from the model's own
   landmarks; the second pass's means, raw covariances and the true points are kept, all in [-1, 1] crop units.
2. :func:`fit` fits per landmark group ``λ_cal = exp(a) λ_raw^b``: ``b`` (and a first ``a``) by the Gaussian
   likelihood of the errors projected on the covariance's eigenvectors, then ``a`` re-chosen so the 1/2/3-σ
   ellipse coverage is closest to the Gaussian's (39.3 / 86.5 / 98.9 %): landmark errors have heavier tails
   than a Gaussian, and the coverages are what apps read off the ellipses.
3. :func:`write_calibration` stores it in the ONNX file's ``star_track`` metadata.

    python -m train calibrate-uncertainty star_track/model/bundled/star68-fast.onnx --data ../shared/data
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from star_track.crop import crop_from_landmarks, frame_to_normalized
from star_track.model.schemes import LandmarkScheme
from star_track.uncertainty import CALIBRATION_VERSION, LAMBDA_FLOOR, UncertaintyCalibration

from .annotations import FaceAnnotation

SIGMAS = (1.0, 2.0, 3.0)


def ideal_coverage(k: float) -> float:
    """Share of a 2-D Gaussian inside its k-σ ellipse: 1 - exp(-k²/2)."""
    return 1.0 - math.exp(-k * k / 2)


@dataclass
class HeldOut:
    """Model outputs on held-out faces (F faces, N points), crop units unless noted."""

    mean: np.ndarray   # (F, N, 2)
    cov: np.ndarray    # (F, N, 2, 2) raw STAR covariance
    truth: np.ndarray  # (F, N, 2)
    to_frame: np.ndarray  # (F,) frame pixels per crop unit (crop side / 2)
    images: list[str]

    def subset(self, idx) -> "HeldOut":
        idx = np.asarray(idx)
        return HeldOut(self.mean[idx], self.cov[idx], self.truth[idx], self.to_frame[idx],
                       [self.images[i] for i in idx])


def collect(engine, faces: list[FaceAnnotation], image_root: str | Path, batch: int = 16) -> HeldOut:
    """Run ``engine`` (a :class:`~star_track.engines.base.LandmarkEngine`) on ``faces`` with tracker framing."""
    meta = engine.meta
    from star_track.model.schemes import get_scheme

    eyes = get_scheme(meta.scheme).outer_eye_corners
    crop_of = lambda pts: crop_from_landmarks(pts, meta.input_size, meta.crop_scale, rotate=True,  # noqa: E731
                                              eye_corners=eyes)
    means, covs, truths, scales, names = [], [], [], [], []
    for start in range(0, len(faces), batch):
        chunk = faces[start:start + batch]
        frames = [cv2.imread(str(Path(image_root) / f.image)) for f in chunk]
        for f, img in zip(chunk, frames):
            if img is None:
                raise FileNotFoundError(f"cannot read image {Path(image_root) / f.image}")
        crops = [crop_of(f.landmarks) for f in chunk]
        m1, _ = engine.infer(np.stack([c.warp(img) for c, img in zip(crops, frames)]))
        crops = [crop_of(c.normalized_to_frame(m.astype(np.float64), np.eye(2)[None])[0]) for c, m in zip(crops, m1)]
        m2, c2 = engine.infer(np.stack([c.warp(img) for c, img in zip(crops, frames)]))
        for f, c, m, s in zip(chunk, crops, m2, c2):
            means.append(m)
            covs.append(s)
            truths.append(frame_to_normalized(c, np.asarray(f.landmarks, np.float64)))
            scales.append(c.side / 2)
            names.append(f.image)
    return HeldOut(np.asarray(means, np.float64), np.asarray(covs, np.float64), np.asarray(truths),
                   np.asarray(scales), names)


def landmark_groups(scheme: LandmarkScheme) -> dict[str, list[int]]:
    """Landmark groups from the scheme's parts: contour, brows, nose, eyes, mouth (+ other)."""
    rename = {"lip": "mouth", "brow": "brows", "eye": "eyes"}
    groups: dict[str, list[int]] = {}
    for e in scheme.edges:
        key = e.name.split("_")[0]
        key = rename.get(key, key)
        groups.setdefault(key, [])
        groups[key] += [int(i) for i in e.points if not any(int(i) in g for g in groups.values())]
    seen = {i for g in groups.values() for i in g}
    rest = [i for i in range(scheme.num_points) if i not in seen]
    if rest:
        groups["other"] = rest
    return {k: sorted(set(v)) for k, v in groups.items() if v}


def _projected(h: HeldOut, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (M, 2) of the raw covariances of landmarks ``idx`` and the squared errors along their
    eigenvectors (M, 2); non-finite samples dropped."""
    c = h.cov[:, idx].reshape(-1, 2, 2)
    e = (h.truth[:, idx] - h.mean[:, idx]).reshape(-1, 2)
    ok = np.isfinite(c).all(axis=(1, 2)) & np.isfinite(e).all(1)
    lam, vec = np.linalg.eigh(0.5 * (c[ok] + np.swapaxes(c[ok], 1, 2)))
    proj = np.einsum("mij,mi->mj", vec, e[ok])
    return np.clip(lam, LAMBDA_FLOOR, None), proj ** 2


def _mahalanobis2(log_lam: np.ndarray, e2: np.ndarray, a: float, b: float) -> np.ndarray:
    return (e2 * np.exp(-(a + b * log_lam))).sum(1)


def fit_group(lam: np.ndarray, e2: np.ndarray) -> tuple[float, float]:
    """(a, b) for one group (see module docs)."""
    from scipy.optimize import minimize

    log_lam = np.log(lam)

    def nll(p):
        a, b = p
        ll = a + b * log_lam
        return float(np.mean(ll + e2 * np.exp(-ll)))

    a0 = float(np.log(np.mean(e2) / np.mean(lam)))
    a, b = minimize(nll, [a0, 1.0], method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7}).x
    b = float(np.clip(b, 0.0, 3.0))
    d2 = _mahalanobis2(log_lam, e2, 0.0, b)  # r² at a = 0; r²(a) = d2 exp(-a)
    grid = a + np.linspace(-3, 3, 601)
    miss = [sum((np.mean(d2 * math.exp(-g) <= k * k) - ideal_coverage(k)) ** 2 for k in SIGMAS) for g in grid]
    return float(grid[int(np.argmin(miss))]), b


def fit(h: HeldOut, scheme: LandmarkScheme) -> dict:
    """The calibration dict stored as :attr:`ModelMeta.uncertainty`."""
    groups = landmark_groups(scheme)
    params = {}
    for name, idx in groups.items():
        a, b = fit_group(*_projected(h, idx))
        params[name] = [round(a, 5), round(b, 5)]
    return {"version": CALIBRATION_VERSION, "form": "lambda_cal = exp(a) * lambda_raw ** b per group, crop units",
            "groups": groups, "params": params, "fitted_on_faces": int(len(h.mean))}


def coverage(h: HeldOut, calib: UncertaintyCalibration) -> dict[str, float]:
    """Share of true points inside the 1/2/3-σ ellipses of ``calib`` applied to the raw covariances."""
    d2 = mahalanobis2(h, calib)
    return {f"{k:g}sigma": float(np.mean(d2 <= k * k)) for k in SIGMAS}


def mahalanobis2(h: HeldOut, calib: UncertaintyCalibration) -> np.ndarray:
    """Squared Mahalanobis distance of every true point (F·N,) under the calibrated covariance."""
    c = calib.apply(h.cov)
    e = h.truth - h.mean
    ok = np.isfinite(c).all(axis=(-1, -2))
    d2 = np.full(e.shape[:2], np.inf)
    d2[ok] = np.einsum("mi,mij,mj->m", e[ok], np.linalg.inv(c[ok]), e[ok])
    return d2.ravel()


def write_calibration(onnx_path: str | Path, calibration: dict) -> None:
    """Rewrite the model's ``star_track`` metadata with ``uncertainty`` = ``calibration`` (in place)."""
    from star_track.nn.onnx_export import rewrite_meta

    rewrite_meta(onnx_path, uncertainty=calibration)


def calibrate_model(onnx_path: str | Path, faces: list[FaceAnnotation], image_root: str | Path) -> dict:
    """Fit on ``faces`` and store the calibration in ``onnx_path``; returns it with in-sample coverages."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.model.schemes import get_scheme

    engine = OnnxRuntimeEngine(onnx_path)
    scheme = get_scheme(engine.meta.scheme)
    h = collect(engine, faces, image_root)
    calib = fit(h, scheme)
    write_calibration(onnx_path, calib)
    n = scheme.num_points
    return {"calibration": calib,
            "coverage_raw": coverage(h, UncertaintyCalibration.identity(n)),
            "coverage_calibrated_in_sample": coverage(h, UncertaintyCalibration.from_meta(
                type("M", (), {"uncertainty": calib})(), n))}
