"""98-point models on the held-out WFLW faces with official 98-point labels, beside the 68-point models and dlib.

Faces: ``data/wflw98_val.jsonl`` (written by :func:`train.prepare.prepare_shared_wflw68`; when it is missing the
same list is built in memory with that function): every face of ``shared/data/wflw`` with official WFLW 98-point
labels whose photo falls in the fixed by-photo held-out split (:func:`train.prepare.is_wflw_validation_image`), so
no model trains on them. ``face.extra["wflw_split"]`` says which official WFLW split a face comes from; the WFLW
``test``-split faces, the ``train``-split faces of the same held-out photos and ``all`` are reported separately.

Models: ``--models98`` (98-point models, WFLW scheme; a bundled name, a ``.onnx`` path, or a name found as
``runs/candidates/NAME.onnx`` before it is bundled) and ``--models68`` (68-point models, compared on the 68 points
the 98 imply: :meth:`WFLW_98.reduce_to_68 <star_track.model.schemes.LandmarkScheme.reduce_to_68>` on prediction
and label alike), plus dlib's HOG detector + 68-point shape predictor when the ``[bench]`` extra is installed.

Protocols (as in :mod:`benchmarks.w300`):

``label-framed``  each model's evaluation crop framed from the true landmarks (its own scheme's: 98 points for
                  98-point models, the implied 68 for 68-point ones; :func:`train.combined.gt_framed_predictions`,
                  one pass). dlib: its predictor on the 68-point label box mapped onto its HOG framing by a
                  (dx, dy, k) box calibration fitted on its own photo-mode detections of these photos
                  (:func:`benchmarks.accuracy.fit_box_to_box`).
``photo``         ``Tracker(model).detect_image(image)`` with its default photo search (dlib: HOG with one
                  upsampling). A true face is matched to the returned face whose box centre is nearest its
                  landmark centre and lies inside its landmark bounding box (:func:`benchmarks.common.match_to_gt`;
                  the landmark box for every face, since the test-split faces carry no WFLW box). A missed face
                  counts as a failure (NME = inf) in FR and AUC; ``found`` says how many were matched.

Metrics: NME normalised by the outer eye corners (WFLW points 60 / 72, the WFLW standard; 36 / 45 on the implied
68), mean and median over the faces found, FR and AUC at 0.1 over all faces (:mod:`train.metrics`). Per region,
mean (median) over faces of each face's mean point error in the region over the outer-eye distance: 98 points
contour 0-32, brows 33-50, nose 51-59, eyes 60-75, mouth 76-95, pupils 96-97; implied 68 points as in
:data:`train.conventions.GROUPS`.

**Convention offset.** The 68-point models follow 300W's label conventions (see their cards), not those of the
68 points derived from WFLW's 98, so part of their NME here is a systematic offset between the two label sets.
"offset removed" NME (:func:`benchmarks.w300.nme_offset_removed`: each point's mean signed offset in the face
frame, fitted on the other half of the faces, subtracted) is reported for every 68-point row; compare models on
that column for a fair comparison.

    python -m benchmarks.wflw98 [--models98 star98-fast] [--models68 default star68-precise] [--data DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from star_track.model.schemes import WFLW_98, get_scheme
from train.conventions import GROUPS

from .common import (DEFAULT_DATA, REPO, RESULTS_DIR, WFLW98_VAL, dlib_pipeline, load_faces, markdown_table, per_face_nme, photo_mode, photos_of, print_table, region_nme, write_json)

W300_68 = get_scheme("300w68")
CANDIDATES = REPO / "runs" / "candidates"
MODELS98 = ("star98-fast",)
MODELS68 = ("default", "star68-precise")
REGIONS98 = {"contour": range(0, 33), "brows": range(33, 51), "nose": range(51, 60), "eyes": range(60, 76),
             "mouth": range(76, 96), "pupils": range(96, 98)}
"""The 98-point regions the per-region NME is reported for."""
PROTOCOLS = ("label_framed", "photo")


def load_wflw98_heldout(data: Path) -> list:
    """The held-out faces with official 98-point labels: the prepared file, else the same list in memory."""
    if WFLW98_VAL.is_file():
        return load_faces(WFLW98_VAL)
    from train.annotations import read_annotations
    from train.prepare import prepare_shared_wflw68

    with tempfile.TemporaryDirectory() as tmp:  # the same function that writes data/, never into data/
        try:
            written = prepare_shared_wflw68(data / "wflw", Path(tmp))
        except FileNotFoundError as exc:
            raise SystemExit(f"wflw98: {exc}") from None
        if "wflw98_val" not in written:
            raise SystemExit(f"wflw98: no official 98-point labels under {data / 'wflw'}")
        return read_annotations(written["wflw98_val"])


def resolve(model: str) -> Path:
    """A model argument -> file: bundled name or path, else ``runs/candidates/NAME.onnx`` (not yet bundled)."""
    from star_track.errors import ModelError
    from star_track.model.registry import resolve_model

    try:
        return resolve_model(model)
    except ModelError as exc:
        candidate = CANDIDATES / f"{model}.onnx"
        if "/" in model or model.endswith(".onnx"):  # a path: no fallback
            raise SystemExit(f"wflw98: {exc}") from None
        if candidate.is_file():
            return candidate
        raise SystemExit(f"wflw98: {exc}; not in {CANDIDATES} either") from None


def subset_masks(faces: list) -> dict[str, np.ndarray]:
    """Boolean masks of the WFLW ``test``-split faces, the ``train``-split faces and ``all`` (empty ones left out)."""
    split = np.array([f.extra.get("wflw_split", "") for f in faces])
    masks = {"test": split == "test", "train": split == "train", "all": np.ones(len(faces), bool)}
    return {k: m for k, m in masks.items() if m.any()}


def to_68(faces: list) -> list:
    """The faces with their labels reduced to the 68 points the 98 imply."""
    return [dataclasses.replace(f, landmarks=WFLW_98.reduce_to_68(np.asarray(f.landmarks))) for f in faces]


def scores(nme: np.ndarray) -> dict[str, float]:
    """Mean and median NME over the faces found, FR and AUC at 0.1 over all faces (misses = inf), found."""
    from train.metrics import summarize

    finite = nme[np.isfinite(nme)]
    return {**summarize(nme, 0.1), "median_nme": float(np.median(finite)) if len(finite) else float("nan"),
            "found": int(len(finite))}


def evaluate(pred: np.ndarray, found: np.ndarray, gt: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """Per subset: the 98-point figures when ``pred`` has 98 points, and the figures on the implied 68."""
    from .w300 import convention_offsets, nme_offset_removed

    out: dict[str, dict] = {}
    p68, g68 = WFLW_98.reduce_to_68(pred) if pred.shape[1] == 98 else pred, WFLW_98.reduce_to_68(gt)
    for name, m in masks.items():
        res, f = {}, found & m
        if pred.shape[1] == 98:
            res["98"] = {**scores(per_face_nme(pred[m], gt[m], found[m], WFLW_98)),
                         "regions": region_nme(pred[f], gt[f], WFLW_98, REGIONS98) if f.any() else {}}
        corr = nme_offset_removed(p68[f], g68[f]) if f.sum() >= 4 else np.array([np.nan])
        res["68"] = {**scores(per_face_nme(p68[m], g68[m], found[m], W300_68)),
                     "offset_removed_nme": float(np.mean(corr)), "offset_removed_median": float(np.median(corr)),
                     "convention_offset": convention_offsets(p68[f], g68[f]) if f.any() else {},
                     "regions": region_nme(p68[f], g68[f], W300_68, GROUPS) if f.any() else {}}
        out[name] = res
    return out


def run_model(model: str, faces: list, root: Path, threads: int, points: int) -> dict:
    """Both protocols for one ``points``-point model: ``{"model_info", "points", protocol: per-subset figures}``."""
    from star_track import Tracker
    from star_track.hashing import sha256_file
    from train.combined import gt_framed_predictions

    path = resolve(model)
    gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
    with Tracker(path, engine="onnxruntime", smoothing="none", threads=threads) as tracker:
        has = get_scheme(tracker.meta.scheme).num_points
        if has != points:
            raise SystemExit(f"wflw98: {model} has {has} points, not {points} (a {has}-point model: --models{has})")
        t0 = time.perf_counter()
        framed = gt_framed_predictions(tracker.engine, faces if points == 98 else to_68(faces), root)
        t_framed = time.perf_counter() - t0

        def predict(img: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
            found_faces = tracker.detect_image(img)  # the default photo search
            return np.array([f.box for f in found_faces]).reshape(-1, 4), [f.landmarks for f in found_faces]

        photo, _, found, t_photo = photo_mode(predict, faces, root, points)
    masks = subset_masks(faces)
    return {"model_info": {"arg": model, "file": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                           "sha256": sha256_file(path)}, "points": points,
            "label_framed": evaluate(framed, np.ones(len(faces), bool), gt, masks),
            "photo": evaluate(photo, found, gt, masks),
            "seconds": {"label_framed": t_framed, "photo": t_photo}}


def run_dlib(pipe, faces: list, root: Path) -> dict:
    """dlib on the implied 68 points: photo mode, then label-framed from label boxes mapped onto its HOG framing
    (a (dx, dy, k) calibration fitted on the faces its HOG detector found)."""
    from .accuracy import apply_box_calibration, fit_box_to_box

    faces68 = to_68(faces)
    gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
    photo, hog_box, found, t_photo = photo_mode(pipe.run, faces68, root, 68)
    label_box = np.array([[*f.landmarks.min(0), *f.landmarks.max(0)] for f in faces68], np.float64)
    calib = fit_box_to_box(label_box[found], hog_box[found]) if found.sum() >= 5 else (0.0, 0.0, 1.0)
    t0, framed = time.perf_counter(), np.full((len(faces), 68, 2), np.nan)
    for img, idx in photos_of(faces, root):
        gray = pipe.gray(img)
        for i in idx:
            framed[i] = pipe.landmarks(gray, apply_box_calibration(label_box[i], calib))
    t_framed = time.perf_counter() - t0
    masks = subset_masks(faces)
    return {"model_info": {"arg": "dlib", "file": "shape_predictor_68_face_landmarks.dat"}, "points": 68,
            "label_box_to_hog_box": calib, "label_framed": evaluate(framed, np.ones(len(faces), bool), gt, masks),
            "photo": evaluate(photo, found, gt, masks),
            "seconds": {"label_framed": t_framed, "photo": t_photo}}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def accuracy_rows(results: dict[str, dict], points: str) -> tuple[list, list]:
    """One row per model / protocol / subset: found, NME mean and median, FR, AUC (+ offset removed on 68)."""
    cols = ["model", "protocol", "faces", "found", "NME %", "median %", "FR@0.1 %", "AUC@0.1"]
    cols += ["offset removed NME % (median)", "offset pt"] if points == "68" else []
    rows = []
    for model, r in results.items():
        for proto in PROTOCOLS:
            for subset, per in r[proto].items():
                s = per.get(points)
                if s is None:
                    continue
                row = [model, f"{proto.replace('_', '-')} / {subset}", s["count"], s["found"], _pct(s["nme"]),
                       _pct(s["median_nme"]), f"{100 * s['fr@0.1']:.1f}", f"{s['auc@0.1']:.3f}"]
                if points == "68":
                    off = s["convention_offset"].get("all", {}).get("point_offset", float("nan"))
                    row += [f"{_pct(s['offset_removed_nme'])} ({_pct(s['offset_removed_median'])})", f"{off:.4f}"]
                rows.append(row)
    return cols, rows


def region_rows(results: dict[str, dict], points: str) -> tuple[list, list]:
    """One row per model / protocol / subset: each region's mean (median) NME %."""
    from train.conventions import GROUPS

    names = list(REGIONS98 if points == "98" else GROUPS)
    rows = []
    for model, r in results.items():
        for proto in PROTOCOLS:
            for subset, per in r[proto].items():
                reg = per.get(points, {}).get("regions")
                if reg:
                    rows.append([model, f"{proto.replace('_', '-')} / {subset}",
                                 *(f"{_pct(reg[g]['mean'])} ({_pct(reg[g]['median'])})" for g in names)])
    return ["model", "protocol / subset", *names], rows


def report(results: dict[str, dict], n_faces: dict[str, int]) -> dict[str, str]:
    """Print the four tables; return them as markdown."""
    sizes = ", ".join(f"{k} {v}" for k, v in n_faces.items())
    tables = {"accuracy98": (f"98 points, held-out WFLW faces ({sizes}), NME / outer-eye distance (60-72)",
                             accuracy_rows(results, "98")),
              "regions98": ("98 points per region, NME % mean (median) over faces found", region_rows(results, "98")),
              "accuracy68": ("The 68 points the 98 imply (reduce_to_68 on prediction and label), NME / outer-eye "
                             "distance (36-45)", accuracy_rows(results, "68")),
              "regions68": ("Implied 68 points per region, NME % mean (median) over faces found",
                            region_rows(results, "68"))}
    md = {}
    for key, (title, (cols, rows)) in tables.items():
        print_table(title, cols, rows)
        md[key] = markdown_table(cols, rows)
    print("NME mean / median over the faces found; FR and AUC count a missed face (photo mode) as a failure. "
          "68-point models and dlib follow 300W's label conventions, not those of WFLW-derived 68 points: "
          "compare them on 'offset removed' (each point's mean signed offset, fitted on the other half of the "
          "faces, subtracted). offset pt: mean length of the per-point mean offsets (face frame, IOD units), the "
          "systematic part of the error (benchmarks.w300.convention_offsets).")
    return md


def main(argv: list[str] | None = None) -> None:
    import warnings

    from star_track.uncertainty import UncalibratedUncertaintyWarning

    warnings.simplefilter("ignore", UncalibratedUncertaintyWarning)  # no covariance is used here
    p = argparse.ArgumentParser(prog="python -m benchmarks.wflw98", description=__doc__.split("\n\n")[0])
    p.add_argument("--models98", nargs="*", default=list(MODELS98), help="98-point models (names or .onnx paths)")
    p.add_argument("--models68", nargs="*", default=list(MODELS68), help="68-point models (names or .onnx paths)")
    p.add_argument("--no-dlib", action="store_true", help="skip dlib even when installed")
    p.add_argument("--data", type=Path, default=None, help="shared data folder holding wflw/")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces (quick check)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for wflw98.json")
    a = p.parse_args(argv)
    data = a.data or DEFAULT_DATA
    t0 = time.perf_counter()
    faces = load_wflw98_heldout(data)[:a.limit]
    root = data / "wflw"
    results: dict[str, dict] = {}
    for m, points in [(m, 98) for m in a.models98] + [(m, 68) for m in a.models68]:
        label = f"{m} ({resolve(m).stem})" if m == "default" else m
        results[label] = run_model(m, faces, root, a.threads, points)
    pipe = None if a.no_dlib else dlib_pipeline()
    if pipe is not None:
        results["dlib HOG + 68"] = run_dlib(pipe, faces, root)
    n_faces = {k: int(v.sum()) for k, v in subset_masks(faces).items()}
    md = report(results, n_faces)
    path = write_json("wflw98", {
        "command": " ".join(["python -m benchmarks.wflw98", *(argv if argv is not None else sys.argv[1:])]),
        "faces": n_faces, "images": len({f.image for f in faces}),
        "heldout": str(WFLW98_VAL.relative_to(REPO)), "regions98": {k: [r.start, r.stop - 1] for k, r in
                                                                   REGIONS98.items()},
        "matching": "photo mode: benchmarks.common.match_to_gt, landmark bounding box; misses = inf",
        "results": results, "markdown": md, "seconds": time.perf_counter() - t0}, a.out)
    print(f"results: {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
