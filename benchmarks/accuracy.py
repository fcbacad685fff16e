"""Landmark accuracy on the held-out WFLW faces: star-track vs dlib (HOG + 68-point ERT).

Two protocols, 68 points, NME normalised by the outer-eye-corner distance (points 36 / 45):

``detector``   each pipeline runs its own face detector on the full photo. Ours three ways, all through
               :meth:`Tracker.detect_image` with the bundled BlazeFace in IMAGE mode: photo mode (the default:
               whole image + tiles + rolled passes, no face cap), today's out-of-the-box single whole-image pass
               capped at 4 faces (``search="single", max_faces=4``, what video mode's detector sees) and the same
               single pass uncapped; dlib: ``get_frontal_face_detector()`` with one upsampling. A ground-truth face
               is matched to the prediction whose box centre is nearest its landmark centre and lies inside its
               WFLW box; an unmatched face counts as a failure (NME = inf) in FR and AUC.
``same box``   both landmark predictors start from the same box, the face's WFLW annotation box, so detector
               misses and framing drop out. Each maps the box to the framing it was built for by a 3-number
               (dx, dy, k) box calibration, as the tracker does for its detectors: ours fitted on the TRAIN split
               (WFLW box -> landmark crop), dlib's fitted on the photos' own HOG detections (WFLW box -> HOG box;
               boxes only, no landmarks). Our crop then goes through the tracker's own two-pass refinement.

    python -m benchmarks.accuracy [--model PATH] [--data ../shared/data] [--limit N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from star_track.crop import crop_from_box
from star_track.model.schemes import get_scheme
from star_track import Tracker
from train.calibrate import box_to_crop

from .common import (COMBINED_VAL, DEFAULT_DATA, DOCS_DIR, RESULTS_DIR, TRAIN_ANNOTATIONS, VAL_ANNOTATIONS, DlibPipeline,
                     load_faces, markdown_table, match_to_gt, model_info, model_label, photos_of, print_table,
                     write_json)

SCHEME = get_scheme("300w68")


def fit_box_to_crop(faces: list, crop_scale: float) -> tuple[float, float, float]:
    """(dx, dy, k) mapping an annotation box to the landmark-defined training crop (medians over ``faces``)."""
    rows = [box_to_crop(f.box, f.landmarks, crop_scale) for f in faces if f.box is not None]
    return tuple(float(v) for v in np.median(np.asarray(rows), 0))


def fit_box_to_box(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, k) mapping boxes ``src`` (K, 4) onto ``dst`` (K, 4): centre shift in src sides, side ratio."""
    side = np.maximum(src[:, 2] - src[:, 0], src[:, 3] - src[:, 1])
    dside = np.maximum(dst[:, 2] - dst[:, 0], dst[:, 3] - dst[:, 1])
    dc = ((dst[:, :2] + dst[:, 2:]) - (src[:, :2] + src[:, 2:])) / 2 / side[:, None]
    return float(np.median(dc[:, 0])), float(np.median(dc[:, 1])), float(np.median(dside / side))


def apply_box_calibration(box, calib: tuple[float, float, float]) -> np.ndarray:
    """Square box after a (dx, dy, k) calibration, as x1, y1, x2, y2."""
    c = crop_from_box(box, 1, calib)
    h = c.side / 2
    return np.array([c.center[0] - h, c.center[1] - h, c.center[0] + h, c.center[1] + h])


def ours_from_box(tracker: Tracker, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The tracker's own new-face path (box crop -> landmarks -> refined crop -> landmarks), no smoothing."""
    face = tracker.landmarks_for_boxes(image, [box])[0]  # the exact per-face code path of Tracker.detect_image
    return None if face is None else face.raw_landmarks


def run(model: str | None, data: Path, limit: int | None = None, detector: str = "full",
        min_confidence: float = 0.5, flip_test: bool = False, labels: str = "300w") -> dict:
    faces = load_faces(VAL_ANNOTATIONS)
    if labels == "300w":  # the same faces, labels on 300W semantics (the bundled models' and dlib's convention)
        faces = [f for f in load_faces(COMBINED_VAL) if f.extra.get("source") == "wflw"]
    train_faces = load_faces(TRAIN_ANNOTATIONS)
    if limit:
        faces = faces[:limit]
    root = data / "wflw"
    n = len(faces)
    gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
    ours_modes = {"ours_det": {}, "single4": {"search": "single", "max_faces": 4}, "single": {"search": "single"}}
    preds = {k: np.full((n, 68, 2), np.nan) for k in (*ours_modes, "dlib_det", "ours_box", "dlib_box")}
    found = {k: np.zeros(n, bool) for k in (*ours_modes, "dlib_det")}
    returned = {k: 0 for k in (*ours_modes, "dlib_det")}  # faces returned in all (annotated or not)
    seconds = {k: 0.0 for k in preds}
    dlib = DlibPipeline(upsample=1)
    dlib_pairs = []  # (WFLW box, matched HOG box) for dlib's box calibration
    gray_cache: dict[str, np.ndarray] = {}

    with Tracker(model, engine="onnxruntime", smoothing="none", max_faces=64, detector=detector,
                 min_detection_confidence=min_confidence, flip_test=flip_test) as tracker:
        ours_calib = fit_box_to_crop(train_faces, tracker.meta.crop_scale)
        warm = cv2.imread(str(root / faces[0].image))
        for kwargs in ours_modes.values():  # load the still-image detector and warm the engine, untimed
            tracker.detect_image(warm, **kwargs)
        for img, idx in photos_of(faces, root):
            for key, kwargs in ours_modes.items():
                t0 = time.perf_counter()
                ours = tracker.detect_image(img, **kwargs)
                seconds[key] += time.perf_counter() - t0
                returned[key] += len(ours)
                ocentres = np.array([(f.box[:2] + f.box[2:]) / 2 for f in ours]).reshape(-1, 2)
                for i in idx:
                    j = match_to_gt(ocentres, faces[i].landmarks, faces[i].box)
                    if j is not None:
                        preds[key][i], found[key][i] = ours[j].landmarks, True
            t0 = time.perf_counter()
            gray = dlib.gray(img)
            dboxes = dlib.detect(gray)
            dpts = [dlib.landmarks(gray, b) for b in dboxes]
            seconds["dlib_det"] += time.perf_counter() - t0
            returned["dlib_det"] += len(dboxes)
            gray_cache[faces[idx[0]].image] = gray
            dcentres = (dboxes[:, :2] + dboxes[:, 2:]) / 2
            for i in idx:
                f = faces[i]
                j = match_to_gt(dcentres, f.landmarks, f.box)
                if j is not None:
                    preds["dlib_det"][i], found["dlib_det"][i] = dpts[j], True
                    if f.box is not None:
                        dlib_pairs.append((np.asarray(f.box, np.float64), dboxes[j]))
                # Same box for both: ours through the tracker's own box path.
                t0 = time.perf_counter()
                preds["ours_box"][i] = ours_from_box(tracker, img, apply_box_calibration(f.box, ours_calib))
                seconds["ours_box"] += time.perf_counter() - t0
        # dlib same-box pass, after its box calibration is known from its own detections.
        src, dst = (np.stack(v) for v in zip(*dlib_pairs)) if dlib_pairs else (np.zeros((0, 4)),) * 2
        dlib_calib = fit_box_to_box(src, dst) if len(src) >= 5 else (0.0, 0.0, 1.0)
        for i, f in enumerate(faces):
            t0 = time.perf_counter()
            preds["dlib_box"][i] = dlib.landmarks(gray_cache[f.image], apply_box_calibration(f.box, dlib_calib))
            seconds["dlib_box"] += time.perf_counter() - t0
        engine_name = tracker.engine.name
    return {"faces": faces, "gt": gt, "preds": preds, "found": found, "seconds": seconds, "returned": returned,
            "calibration": {"ours_wflw_box_to_crop": ours_calib, "dlib_wflw_box_to_hog_box": dlib_calib,
                            "dlib_pairs": len(dlib_pairs)},
            "engine": engine_name, "images": len({f.image for f in faces})}


def summarise(res: dict) -> list[dict]:
    from train.metrics import nme_per_face, summarize

    rows = []
    labels = {"ours_det": "star-track photo mode (own detector)", "dlib_det": "dlib HOG (own detector)",
              "single4": "star-track before: 1 pass, max 4 faces", "single": "star-track 1 pass, no cap",
              "ours_box": "star-track (same box)", "dlib_box": "dlib (same box)"}
    for key, label in labels.items():
        nme = nme_per_face(res["preds"][key], res["gt"], SCHEME)
        if key in res["found"]:
            nme = np.where(res["found"][key], nme, np.inf)
        s = summarize(nme, 0.1)
        rows.append({"key": key, "pipeline": label, "nme": s["nme"], "fr@0.1": s["fr@0.1"], "auc@0.1": s["auc@0.1"],
                     "detection_rate": float(np.isfinite(nme).mean()), "found": int(np.isfinite(nme).sum()),
                     "faces": s["count"], "returned": res["returned"].get(key),
                     "ms_per_image": 1e3 * res["seconds"][key] / res["images"],
                     "ms_per_face": 1e3 * res["seconds"][key] / s["count"], "nme_per_face": nme})
    # Own detectors, restricted to the faces both pipelines found: landmark quality without the detection gap.
    both = res["found"]["ours_det"] & res["found"]["dlib_det"]
    for r in list(rows[:2]):  # photo mode and dlib
        s = summarize(r["nme_per_face"][both], 0.1)
        rows.append({**r, "key": r["key"] + "_both", "pipeline": r["pipeline"].replace("(own detector)",
                     "(own det., faces both found)"), "nme": s["nme"], "fr@0.1": s["fr@0.1"], "auc@0.1": s["auc@0.1"],
                     "detection_rate": 1.0, "found": s["count"], "faces": s["count"],
                     "nme_per_face": r["nme_per_face"][both]})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model path or name (default: the bundled model)")
    p.add_argument("--data", type=Path, default=None, help="shared data folder holding wflw/")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces (quick check)")
    p.add_argument("--detector", default="full", help="BlazeFace model for our pipeline (full / short)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="our detector's score threshold")
    p.add_argument("--flip-test", action="store_true", help="our pipeline with Tracker(flip_test=True)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for accuracy.json")
    p.add_argument("--docs", type=Path, default=DOCS_DIR, help="folder for the CED plot")
    p.add_argument("--labels", choices=("300w", "wflw"), default="300w",
                   help="300w: the WFLW labels moved onto 300W semantics (data/combined68_val.jsonl, written by "
                        "`python -m train ship`; the convention of the bundled models and of dlib); wflw: the "
                        "68 points derived from WFLW's 98")
    a = p.parse_args(argv)
    if a.labels == "300w" and not COMBINED_VAL.is_file():
        raise SystemExit(f"{COMBINED_VAL} not found: run `python -m train ship --skip-training` or pass --labels wflw")
    from train.metrics import plot_ced

    t0 = time.perf_counter()
    res = run(a.model, a.data or DEFAULT_DATA, a.limit, a.detector, a.min_confidence, a.flip_test, a.labels)
    rows = summarise(res)
    cols = ["pipeline", "found / faces", "NME % (found)", "FR@0.1 % (misses = failures)", "AUC@0.1",
            "faces returned", "ms / image"]
    table = [[r["pipeline"], f"{r['found']} / {r['faces']}", f"{100 * r['nme']:.2f}", f"{100 * r['fr@0.1']:.1f}",
              f"{r['auc@0.1']:.3f}", r["returned"] if r["returned"] is not None else "-",
              f"{r['ms_per_image']:.1f}"] for r in rows]
    title = (f"68-point accuracy on {len(res['faces'])} held-out WFLW faces ({res['images']} photos, labels: "
             f"{'300W semantics' if a.labels == '300w' else 'WFLW-derived'}), "
             f"model {model_label(a.model)} on {res['engine']}, our detector '{a.detector}'")
    print_table(title, cols, table)
    print("NME over found faces only; FR/AUC count missed faces as failures. faces returned: all faces the "
          "pipeline returned on these photos (most photos hold more faces than the annotated ones). ms / image: "
          "detection + landmarks of every returned face for the own-detector rows, landmarks of the annotated "
          "faces only for the same-box rows.")
    r = {row["key"]: row for row in rows}
    print(f"photo mode vs before: {r['ours_det']['found']} vs {r['single4']['found']} faces found, "
          f"{r['ours_det']['ms_per_image'] / r['single4']['ms_per_image']:.2f}x the time per image")
    print("box calibrations (dx, dy, k):", {k: tuple(round(v, 3) for v in c) if isinstance(c, tuple) else c
                                             for k, c in res["calibration"].items()})
    a.out.mkdir(parents=True, exist_ok=True)
    ced = plot_ced({r["pipeline"]: r["nme_per_face"] for r in rows[:6] if r["key"] != "single"},
                   a.docs / "accuracy_ced.png", 0.1)
    print(f"CED plot: {ced}")
    path = write_json("accuracy", {
        "command": " ".join(["python -m benchmarks.accuracy", *(argv if argv is not None else sys.argv[1:])]),
        "model": model_label(a.model), "model_info": model_info(a.model), "engine": res["engine"],
        "detector": a.detector, "labels": a.labels,
        "min_confidence": a.min_confidence, "faces": len(res["faces"]), "images": res["images"],
        "calibration": res["calibration"], "seconds": time.perf_counter() - t0,
        "rows": [{k: v for k, v in r.items() if k != "nme_per_face"} for r in rows],
        "markdown": markdown_table(cols, table)}, a.out)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
