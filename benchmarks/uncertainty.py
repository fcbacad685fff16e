"""Calibrated uncertainty on the held-out faces: ellipse coverage, reliability, predicted vs actual error.

Faces: both held-out splits with labels on 300W semantics (``data/combined68_val.jsonl``: 165 300W faces and the
96 WFLW faces, labels moved by :mod:`train.combined`), the convention the bundled models output and the faces
their stored calibration is fitted on; without that file (no ``python -m train ship`` run), the WFLW faces with
their WFLW-derived labels. Every bundled model runs on the held-out faces framed as the tracker frames a followed face
(:func:`train.uncertainty.collect`). The calibration is **cross-validated**: the held-out faces are split in two
halves by image (a fixed hash of the image name); a calibration fitted on one half is scored on the other and
vice versa, and the out-of-fold results are pooled. (The calibration stored in the model is fitted on all held-out
faces; its in-sample coverage is also printed but is not the honest figure.)

``coverage``     share of true points inside the 1/2/3-σ ellipses (ideal 39.3 / 86.5 / 98.9 %).
``reliability``  observed vs expected coverage for nominal levels 5 .. 99 % (``docs/uncertainty_reliability.png``).
``Spearman``     rank correlation between the predicted per-face error (:func:`star_track.uncertainty.expected_error`)
                 and the actual NME (outer eye corners).
``worst 10 %``   share of the FR@10 failures (NME > 10 %) among the 10 % of faces with the highest predicted error.
``score``        the Tracker's face confidence (:func:`star_track.uncertainty.landmark_score`) and its u (median
                 landmark spread, crop units) on the held-out face crops and on patches of the same photos that
                 overlap no labelled face (5th / 50th / 95th percentile): what ``redetect_below`` separates.

    python -m benchmarks.uncertainty [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import numpy as np

from star_track.crop import Crop
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
from star_track.hashing import sha256_file
from star_track.model import BUNDLED_DIR
from star_track.model.schemes import get_scheme
from star_track.uncertainty import UncertaintyCalibration, expected_error, landmark_score, landmark_spread
from train.uncertainty import SIGMAS, HeldOut, collect, fit, ideal_coverage, mahalanobis2

from .common import (COMBINED_VAL, DEFAULT_DATA, DOCS_DIR, WFLW98_VAL, load_faces, make_console, photos_of,
                     print_table, write_json)

LEVELS = np.array([0.05, 0.1, 0.2, 0.3, 0.393, 0.5, 0.6, 0.7, 0.8, 0.865, 0.9, 0.95, 0.989])


def fold_of(image: str) -> int:
    """0 or 1, fixed per image (all faces of a photo in one fold)."""
    return hashlib.sha1(image.encode()).digest()[0] & 1


def _calib(d: dict, n: int) -> UncertaintyCalibration:
    return UncertaintyCalibration.from_groups(d["groups"], {k: tuple(v) for k, v in d["params"].items()}, n)


def face_errors(h: HeldOut, calib: UncertaintyCalibration, eyes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, actual) per-face NME as fractions (crop units cancel: both are ratios to an eye distance)."""
    cov = calib.apply(h.cov)
    pred = np.array([expected_error(m, c, eyes) for m, c in zip(h.mean, cov)])
    iod = np.linalg.norm(h.truth[:, eyes[1]] - h.truth[:, eyes[0]], axis=1)
    actual = np.linalg.norm(h.truth - h.mean, axis=2).mean(1) / iod
    return pred, actual


def ranking(pred: np.ndarray, actual: np.ndarray, fail: float = 0.1, worst: float = 0.1) -> dict:
    """Spearman(pred, actual) and how many FR@``fail`` failures the worst ``worst`` share by ``pred`` holds."""
    from scipy.stats import spearmanr

    k = max(1, int(round(worst * len(pred))))
    flagged = np.argsort(-pred)[:k]
    failures = actual > fail
    return {"spearman": float(spearmanr(pred, actual).statistic), "faces": int(len(pred)),
            "failures": int(failures.sum()), "failures_in_worst": int(failures[flagged].sum()), "worst_faces": k,
            "mean_predicted_nme": float(pred.mean()), "mean_actual_nme": float(actual.mean())}


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def non_face_patches(faces: list, image_root: Path, size: int, per_image: int = 2, seed: int = 0) -> np.ndarray:
    """Square patches (each as large as a labelled face of the photo) that overlap no labelled face box; photos
    may hold unlabelled faces, so a few patches can still show one."""
    rng = np.random.default_rng(seed)
    faces = sorted(faces, key=lambda f: f.image)  # photos in name order (stable: a photo's faces keep theirs)
    patches = []
    for img, idx in photos_of(faces, image_root):
        marks = [np.asarray(faces[i].landmarks, np.float64) for i in idx]
        boxes = [(*(p.min(0) - 0.3 * np.ptp(p, 0)), *(p.max(0) + 0.3 * np.ptp(p, 0))) for p in marks]
        side = float(np.median([max(b[2] - b[0], b[3] - b[1]) for b in boxes]))
        h, w = img.shape[:2]
        if side >= min(h, w):
            continue
        found = 0
        for _ in range(50):
            x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
            if any(_overlaps((x, y, x + side, y + side), b) for b in boxes):
                continue
            patches.append(Crop((x + side / 2, y + side / 2), side, 0.0, size).warp(img))
            found += 1
            if found == per_image:
                break
    return np.stack(patches)


def confidence_scores(engine, h: HeldOut, faces: list, image_root: Path) -> dict:
    """Percentiles of u and of the score on the face crops (``h``) and on non-face patches of the same photos."""
    def stats(cov: np.ndarray) -> dict:
        q = lambda v: [float(x) for x in np.percentile(v, [5, 50, 95])]  # noqa: E731
        return {"n": len(cov), "u_p5_p50_p95": q(landmark_spread(cov)), "score_p5_p50_p95": q(landmark_score(cov))}

    patches = non_face_patches(faces, image_root, engine.meta.input_size)
    covs = np.concatenate([engine.infer(patches[i:i + 16])[1] for i in range(0, len(patches), 16)])
    return {"faces": stats(h.cov), "non_face_patches": stats(covs)}


def held_out_faces(points: int) -> list:
    """The held-out faces for a ``points``-point model: 68 (see the module docs) or WFLW's 98 (the held-out WFLW
    faces with official 98-point labels, ``data/wflw98_val.jsonl`` from ``python -m train prepare wflw68-dev``)."""
    if points == 98:
        if not WFLW98_VAL.is_file():
            raise SystemExit(f"{WFLW98_VAL} not found: run `python -m train prepare wflw68-dev ../shared/data/wflw` first")
        return load_faces(WFLW98_VAL)
    return load_faces(COMBINED_VAL) if COMBINED_VAL.is_file() else load_faces()


def evaluate_model(path: Path, image_root: Path) -> dict:
    """Coverage, reliability and ranking for one model on its held-out faces (:func:`held_out_faces`): raw,
    stored (in-sample) and cross-validated."""
    engine = OnnxRuntimeEngine(path)
    scheme = get_scheme(engine.meta.scheme)
    faces = held_out_faces(scheme.num_points)
    n, eyes = scheme.num_points, scheme.outer_eye_corners
    h = collect(engine, faces, image_root)
    folds = np.array([fold_of(im) for im in h.images])
    d2_cv = np.empty((len(h.mean), n))
    pred_cv = np.empty(len(h.mean))
    fold_params = []
    for k in (0, 1):
        fit_on, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        d = fit(h.subset(fit_on), scheme)
        fold_params.append(d["params"])
        part = h.subset(test)
        d2_cv[test] = mahalanobis2(part, _calib(d, n)).reshape(len(test), n)
        pred_cv[test] = face_errors(part, _calib(d, n), eyes)[0]
    raw = UncertaintyCalibration.identity(n)
    d2_raw = mahalanobis2(h, raw)
    stored = UncertaintyCalibration.from_meta(engine.meta, n)
    pred_raw, actual = face_errors(h, raw, eyes)
    cov_of = lambda d2: {f"{k:g}sigma": float(np.mean(d2 <= k * k)) for k in SIGMAS}  # noqa: E731
    rel_of = lambda d2: [float(np.mean(d2 <= -2 * math.log(1 - p))) for p in LEVELS]  # noqa: E731
    out = {"model": path.name, "sha256": sha256_file(path), "faces": len(h.mean),
           "fold_sizes": [int((folds == k).sum()) for k in (0, 1)],
           "coverage_raw": cov_of(d2_raw), "coverage_cv": cov_of(d2_cv.ravel()),
           "reliability_levels": LEVELS.tolist(), "reliability_raw": rel_of(d2_raw),
           "reliability_cv": rel_of(d2_cv.ravel()), "fold_params": fold_params,
           "ranking_raw": ranking(pred_raw, actual), "ranking_cv": ranking(pred_cv, actual),
           "calibrated_in_model": stored.fitted, "confidence": confidence_scores(engine, h, faces, image_root)}
    if stored.fitted:
        out["coverage_stored_in_sample"] = cov_of(mahalanobis2(h, stored))
        out["stored_params"] = engine.meta.uncertainty["params"]
    return out


def plot(results: list[dict], path: Path) -> Path:
    """Reliability diagram: observed vs expected ellipse coverage, raw and calibrated (out-of-fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="ideal")
    for r, color in zip(results, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        x = r["reliability_levels"]
        ax.plot(x, r["reliability_cv"], "o-", color=color, ms=4, label=f"{r['model']} calibrated (cross-val.)")
        ax.plot(x, r["reliability_raw"], "x:", color=color, ms=4, label=f"{r['model']} raw STAR covariance")
    for k in SIGMAS:
        ax.axvline(ideal_coverage(k), color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("expected coverage of the ellipse (Gaussian)")
    ax.set_ylabel("observed share of true landmarks inside")
    ax.set_title(f"Uncertainty reliability, {results[0]['faces']} held-out faces\n(vertical lines: 1/2/3 σ)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--models", nargs="*", type=Path, default=None, help="default: every bundled .onnx model")
    ap.add_argument("--model", default=None, help="one model path or name (as the other benchmarks take)")
    args = ap.parse_args(argv)
    if args.model:
        from star_track.model.registry import resolve_model

        args.models = [resolve_model(args.model)]
    models = args.models or sorted(BUNDLED_DIR.glob("*.onnx"))
    console = make_console()
    held_out_68 = str(COMBINED_VAL) if COMBINED_VAL.is_file() else "held-out WFLW faces, WFLW-derived labels"
    if not COMBINED_VAL.is_file():
        console.print(f"note: {COMBINED_VAL} not found (`python -m train ship` writes it): 68-point models are scored "
                      "on the held-out WFLW faces with WFLW-derived labels, not the 300W semantics their calibration "
                      "was fitted on, so their stored calibration's coverage is not comparable", soft_wrap=True)
    results = [evaluate_model(m, args.data / "wflw") for m in models]
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    rows = []
    for r in results:
        rows.append([r["model"], "raw STAR", *(pct(r["coverage_raw"][f"{k:g}sigma"]) for k in SIGMAS)])
        rows.append([r["model"], "calibrated, cross-validated", *(pct(r["coverage_cv"][f"{k:g}sigma"])
                                                                  for k in SIGMAS)])
        if "coverage_stored_in_sample" in r:
            rows.append([r["model"], "stored calibration, in-sample",
                         *(pct(r["coverage_stored_in_sample"][f"{k:g}sigma"]) for k in SIGMAS)])
    rows.append(["(Gaussian ideal)", "", *(pct(ideal_coverage(k)) for k in SIGMAS)])
    print_table("Ellipse coverage on held-out faces (%)", ["model", "covariance", "1σ", "2σ", "3σ"], rows, console)
    rows = []
    for r in results:
        for key, label in (("ranking_raw", "raw"), ("ranking_cv", "calibrated, cross-validated")):
            g = r[key]
            rows.append([r["model"], label, f"{g['spearman']:.3f}", f"{g['failures_in_worst']}/{g['failures']}",
                         pct(g["mean_predicted_nme"]), pct(g["mean_actual_nme"])])
    print_table("Predicted vs actual per-face NME", ["model", "covariance", "Spearman", "FR@10 in worst 10 %",
                                                     "mean predicted NME %", "mean actual NME %"], rows, console)
    fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    rows = [[r["model"], kind.replace("_", " "), str(c["n"]), fmt(c["u_p5_p50_p95"]), fmt(c["score_p5_p50_p95"])]
            for r in results for kind, c in r["confidence"].items()]
    print_table("Face confidence (Tracker score), 5th / 50th / 95th percentile", ["model", "crops", "n",
                                                                                 "u (crop units)", "score"], rows,
                console)
    fig = plot(results, DOCS_DIR / "uncertainty_reliability.png")
    command = " ".join(["python -m benchmarks.uncertainty", *(argv if argv is not None else sys.argv[1:])])
    path = write_json("uncertainty", {"command": command, "held_out_68": held_out_68, "results": results})
    print(f"wrote {path} and {fig}")


if __name__ == "__main__":
    main()
