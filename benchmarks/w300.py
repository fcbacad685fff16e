"""The bundled models on the 300W held-out faces, and the offset between their 68 points and 300W's own.

Faces: the fixed by-image held-out split of ``shared/data/300w`` (AFW, part of HELEN train and LFPW train:
286 faces, of which the 165 AFW/HELEN faces are the 300W set of every figure before LFPW came, reported as the
``AFW+HELEN`` part; :func:`train.prepare.is_w300_validation_image`, 15 % of images, the path hashed as
``300w/<path>``); no model trains or distils on them. The same figures on the held-out WFLW test-split faces
(``data/wflw68_val.jsonl``, 68 points reduced from WFLW), and, when ``data/combined68_val.jsonl`` exists
(``python -m train ship``), on those faces with their labels moved onto 300W semantics (row ``wflw→300w``: the
per-point correction and the pixel convention of :mod:`train.combined`, fitted on training faces only) and on
the WFLW train-split faces of the held-out photos, labels moved the same way (row ``wflw train→300w``; models
built before the WFLW train labels came saw teacher labels of those photos). Models trained on 300W semantics should be
read on ``300w`` and ``wflw→300w``; ``wflw`` measures them against the other convention.

Any ``.onnx`` path is accepted as a model, e.g. the WFLW-stage models ``runs/wflw-stage/*.onnx``. A 98-point
model (``star98-fast``) is scored on the 68 points it implies (``--68``), framed by the same box. A model named
with ``+flip`` (``star68-precise+flip``) runs with test-time flip averaging (``Tracker(flip_test=True)``), as
photo mode does by default.

Per bundled model (loaded by name through the SDK), 68 points, NME normalised by the outer-eye-corner distance
(points 36 / 45), FR and AUC at 0.1:

``GT-framed``   the evaluation crop of the model cards: framed from the true landmarks
                (:class:`train.dataset.FaceCropDataset` without augmentation), one pass of the model.
``end to end``  ``Tracker.detect_image(image, search="single")`` with the model's own detector on the whole
                photo; a true face is matched to the returned face whose box centre is nearest its landmark
                centre and lies inside its landmark box (``benchmarks.common.match_to_gt``, as in the accuracy
                benchmark); a miss is a failure (NME = inf) in FR and AUC.

**Per region** (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67), both modes: each face's mean
point error over the region's points / the outer-eye distance, then the mean and the median over the faces
(end to end: the faces found).

**Convention offset** (GT-framed predictions): each prediction minus its label, in the face's frame (x along the
true outer-eye axis, y perpendicular, pointing down the face) and in inter-ocular units. Per landmark group (jaw
0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67): ``dx, dy`` the mean signed offset over the group's
points and faces (left and right halves can cancel in x), and ``|mean|`` the mean over the group's points of the
length of each point's mean signed offset (its systematic offset; does not cancel). "NME offset removed" subtracts
each point's mean signed offset fitted on the other half of the faces (2-fold), i.e. what a per-point correction
between the two conventions would gain at most.

    python -m benchmarks.w300 [--models default star68-accurate] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from star_track.model.schemes import get_scheme
from star_track import Tracker
from train.conventions import GROUPS, face_frame_offsets

from .common import (
    COMBINED_VAL,
    DEFAULT_DATA,
    REPO,
    RESULTS_DIR,
    VAL_ANNOTATIONS,
    dlib_pipeline,
    load_faces,
    markdown_table,
    model_info,
    per_face_nme,
    photo_mode,
    print_table,
    write_json,
)
from .common import region_nme as common_region_nme

SCHEME = get_scheme("300w68")
W300_VAL_ANNOTATIONS = REPO / "data" / "300w68_val.jsonl"
"""Written by ``python -m train prepare 300w ../shared/data/300w --out data --allow-partial``."""
MODELS = ("default", "star68-accurate")
FLIP = "+flip"
"""Suffix of a model name that runs it with test-time flip averaging."""


def split_flip(model: str) -> tuple[str, bool]:
    """(model without the :data:`FLIP` suffix, whether it had it)."""
    return (model[:-len(FLIP)], True) if model.endswith(FLIP) else (model, False)


def load_w300_heldout(data: Path) -> list:
    """The 300W held-out faces: ``data/300w68_val.jsonl`` when prepared, else read from the 300W folder with
    the same rule (identical faces)."""
    if W300_VAL_ANNOTATIONS.is_file():
        return load_faces(W300_VAL_ANNOTATIONS)
    from train.prepare import is_w300_validation_image
    from train.readers import read_300w

    faces = [f for f in read_300w(data / "300w", "train", skip_missing=True) if is_w300_validation_image(f.image)]
    if not faces:
        raise SystemExit(f"no 300W faces under {data / '300w'}")
    return faces


def gt_framed(tracker: Tracker, faces: list, root: Path) -> np.ndarray:
    """(B, 68, 2) predictions on the crops framed from the true landmarks (as the model cards' figure). A model
    with more points (WFLW's 98) is framed by the same 68 points' box and its points are reduced to 68."""
    from train.combined import gt_framed_predictions

    scheme = tracker.model_scheme
    if scheme.num_points == 68:
        return gt_framed_predictions(tracker.engine, faces, root)
    if scheme.to_68 is None:
        raise SystemExit(f"{tracker.meta.name}: {scheme.name} points cannot be reduced to 68")
    return scheme.reduce_to_68(gt_framed_predictions(tracker.engine, faces, root, framing=SCHEME.name))


def end_to_end(tracker: Tracker, faces: list, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of ``detect_image(search="single")`` matched to the true faces; (preds, found)."""
    def predict(img: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        ours = tracker.detect_image(img, search="single")
        return np.array([f.box for f in ours]).reshape(-1, 4), [f.landmarks for f in ours]

    # No annotation box in 300W: a face counts as found by the landmark box (benchmarks.common.match_photo).
    preds, _, found, _ = photo_mode(predict, faces, root, 68)
    return preds, found


def convention_offsets(pred: np.ndarray, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """Per landmark group: mean signed dx, dy and the mean length of the per-point mean offsets (IOD units)."""
    off = face_frame_offsets(pred, gt)
    per_point = off.mean(0)  # (68, 2) systematic offset of each point
    out = {}
    for name, idx in GROUPS.items():
        idx = list(idx)
        out[name] = {"dx": float(off[:, idx, 0].mean()), "dy": float(off[:, idx, 1].mean()),
                     "point_offset": float(np.linalg.norm(per_point[idx], axis=-1).mean()),
                     "max_point_offset": float(np.linalg.norm(per_point[idx], axis=-1).max()),
                     "nme": float(np.linalg.norm(off[:, idx], axis=-1).mean())}
    out["all"] = {"dx": float(off[..., 0].mean()), "dy": float(off[..., 1].mean()),
                  "point_offset": float(np.linalg.norm(per_point, axis=-1).mean()),
                  "max_point_offset": float(np.linalg.norm(per_point, axis=-1).max()),
                  "nme": float(np.linalg.norm(off, axis=-1).mean())}
    return out


def nme_offset_removed(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-face NME after subtracting each point's mean signed offset (face frame) fitted on the other half."""
    off = face_frame_offsets(pred, gt)
    fold = np.arange(len(off)) % 2
    out = np.empty(len(off))
    for k in (0, 1):
        corr = off[fold != k].mean(0)
        out[fold == k] = np.linalg.norm(off[fold == k] - corr, axis=-1).mean(-1)
    return out


def region_nme(pred: np.ndarray, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """Per 68-point landmark group (:data:`train.conventions.GROUPS`): :func:`benchmarks.common.region_nme`."""
    return common_region_nme(pred, gt, SCHEME, GROUPS)


def part_summary(faces: list, nme_box: np.ndarray, nme_e2e: np.ndarray) -> dict[str, dict]:
    """GT-framed and end-to-end figures per 300W part (``attributes[0]``: afw / helen / lfpw) and for AFW+HELEN
    together (the 300W held-out set before LFPW came); empty for faces without parts."""
    parts = np.array([f.attributes[0] if f.attributes else "" for f in faces])
    groups = {p: parts == p for p in ("afw", "helen", "lfpw") if (parts == p).any()}
    if {"afw", "helen"} <= set(groups):
        groups["AFW+HELEN"] = groups["afw"] | groups["helen"]
    from train.metrics import summarize

    return {p: {"faces": int(m.sum()), "gt_framed": {**summarize(nme_box[m]), "median_nme": float(np.median(nme_box[m]))},
                "end_to_end": {**summarize(nme_e2e[m]), "median_nme": float(np.median(nme_e2e[m])),
                               "found": int(np.isfinite(nme_e2e[m]).sum())}}
            for p, m in groups.items()}


def evaluate_model(model: str, sets: dict[str, tuple[list, Path]], detector: str = "full") -> dict:
    from train.metrics import nme_per_face, summarize

    model, flip = split_flip(model)
    res = {"model_info": model_info(model), "flip_test": flip, "sets": {}}
    with Tracker(model, engine="onnxruntime", smoothing="none", max_faces=64, detector=detector,
                 output_scheme="68", flip_test=flip) as tracker:
        res["engine"] = tracker.engine.name
        for name, (faces, root) in sets.items():
            gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
            t0 = time.perf_counter()
            box_pred = gt_framed(tracker, faces, root)
            e2e_pred, found = end_to_end(tracker, faces, root)
            nme_box = nme_per_face(box_pred, gt, SCHEME)
            nme_e2e = per_face_nme(e2e_pred, gt, found, SCHEME)
            nme_corr = nme_offset_removed(box_pred, gt)
            res["sets"][name] = {
                "faces": len(faces), "images": len({f.image for f in faces}),
                "gt_framed": {**summarize(nme_box), "median_nme": float(np.median(nme_box))},
                "gt_framed_offset_removed_2fold": {**summarize(nme_corr), "median_nme": float(np.median(nme_corr))},
                "end_to_end": {**summarize(nme_e2e), "median_nme": float(np.median(nme_e2e)),
                               "found": int(found.sum())},
                "regions_gt_framed": region_nme(box_pred, gt),
                "regions_end_to_end": region_nme(e2e_pred[found], gt[found]) if found.any() else {},
                "parts": part_summary(faces, nme_box, nme_e2e),
                "convention_offset_gt_framed": convention_offsets(box_pred, gt),
                "convention_offset_end_to_end": convention_offsets(e2e_pred[found], gt[found]) if found.any() else {},
                "seconds": time.perf_counter() - t0}
    return res


DLIB = "dlib HOG + 68"


def run_dlib(faces: list, root: Path) -> dict | None:
    """dlib's HOG detector (one upsampling) + 68-point predictor in photo mode on ``faces``, scored as our end-to-end
    rows (misses count as failures), or None without the ``[bench]`` extra. dlib's predictor was trained on
    300W's photos (AFW, HELEN and LFPW among them): on these faces its figure is not a held-out one."""
    from train.metrics import summarize

    pipe = dlib_pipeline()
    if pipe is None:
        return None
    gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
    t0 = time.perf_counter()
    preds, _, found, _ = photo_mode(pipe.run, faces, root, 68)
    nme = per_face_nme(preds, gt, found, SCHEME)
    return {"model_info": {"arg": "dlib", "file": "shape_predictor_68_face_landmarks.dat"},
            "sets": {"300w": {"faces": len(faces),
                              "end_to_end": {**summarize(nme), "median_nme": float(np.median(nme)),
                                             "found": int(found.sum())},
                              "regions_end_to_end": region_nme(preds[found], gt[found]) if found.any() else {},
                              "seconds": time.perf_counter() - t0}}}


def region_table(results: dict[str, dict]) -> tuple[list, list]:
    """Rows model / set / mode with each region's mean (median) NME %, and the 300W parts' overall figures."""
    cols = ["model", "held-out set", "mode", *GROUPS]
    rows = []
    for model, r in results.items():
        for name, s in r["sets"].items():
            for mode in ("gt_framed", "end_to_end"):
                reg = s.get(f"regions_{mode}")
                if reg:
                    rows.append([model, name, mode.replace("_", " "),
                                 *(f"{100 * reg[g]['mean']:.2f} ({100 * reg[g]['median']:.2f})" for g in GROUPS)])
    return cols, rows


def part_table(results: dict[str, dict]) -> tuple[list, list]:
    cols = ["model", "held-out set", "part", "faces", "GT-framed NME % (median)", "e2e found",
            "e2e NME % (median)", "e2e FR@0.1 %"]
    rows = []
    for model, r in results.items():
        for name, s in r["sets"].items():
            for part, q in s.get("parts", {}).items():
                g, e = q["gt_framed"], q["end_to_end"]
                rows.append([model, name, part, q["faces"], f"{100 * g['nme']:.2f} ({100 * g['median_nme']:.2f})",
                             f"{e['found']} / {q['faces']}", f"{100 * e['nme']:.2f} ({100 * e['median_nme']:.2f})",
                             f"{100 * e['fr@0.1']:.1f}"])
    return cols, rows


def tables(results: dict[str, dict]) -> tuple[tuple[list, list], tuple[list, list]]:
    acc_cols = ["model", "held-out set", "faces", "GT-framed NME %", "median %", "FR@0.1 %", "AUC@0.1",
                "offset removed NME %", "e2e found", "e2e NME %", "e2e median %", "e2e FR@0.1 %", "e2e AUC@0.1"]
    acc = []
    for model, r in results.items():
        for name, s in r["sets"].items():
            e = s["end_to_end"]
            g, c = s.get("gt_framed"), s.get("gt_framed_offset_removed_2fold")
            framed = [f"{100 * g['nme']:.2f}", f"{100 * g['median_nme']:.2f}", f"{100 * g['fr@0.1']:.1f}",
                      f"{g['auc@0.1']:.3f}", f"{100 * c['nme']:.2f}"] if g and c else ["—"] * 5
            acc.append([model, name, s["faces"], *framed, f"{e['found']} / {s['faces']}", f"{100 * e['nme']:.2f}",
                        f"{100 * e['median_nme']:.2f}", f"{100 * e['fr@0.1']:.1f}", f"{e['auc@0.1']:.3f}"])
    combos = [(m, n) for m, r in results.items() for n, s in r["sets"].items() if "convention_offset_gt_framed" in s]
    off_cols = ["group", *[f"{m} / {n}: dx, dy; pt" for m, n in combos]]
    off = []
    for g in (*GROUPS, "all"):
        cells = []
        for m, n in combos:
            o = results[m]["sets"][n]["convention_offset_gt_framed"][g]
            cells.append(f"{o['dx']:+.4f}, {o['dy']:+.4f}; {o['point_offset']:.4f}")
        off.append([g if g == "all" else f"{g} {GROUPS[g].start}-{GROUPS[g].stop - 1}", *cells])
    return (acc_cols, acc), (off_cols, off)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="bundled model names (or .onnx paths); "
                   f"NAME{FLIP}: with test-time flip averaging")
    p.add_argument("--data", type=Path, default=None, help="shared data folder holding 300w/ and wflw/")
    p.add_argument("--detector", default="full", help="BlazeFace model for the end-to-end rows (full / short)")
    p.add_argument("--no-wflw", action="store_true", help="skip the WFLW held-out rows")
    p.add_argument("--no-dlib", action="store_true", help="skip dlib's row even when the [bench] extra is installed")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for w300.json")
    a = p.parse_args(argv)
    data = a.data or DEFAULT_DATA
    t0 = time.perf_counter()
    sets = {"300w": (load_w300_heldout(data), data / "300w")}
    if not a.no_wflw:
        wflw = load_faces(VAL_ANNOTATIONS)
        sets["wflw"] = (wflw, data / "wflw")
        if COMBINED_VAL.is_file():  # the same faces, labels moved onto 300W semantics
            combined = [f for f in load_faces(COMBINED_VAL) if f.extra.get("source") == "wflw"]
            sets["wflw→300w"] = ([f for f in combined if f.extra.get("wflw_split", "test") == "test"],
                                 data / "wflw")
            trainsplit = [f for f in combined if f.extra.get("wflw_split") == "train"]
            if trainsplit:  # the WFLW train-split faces on the held-out photos
                sets["wflw train→300w"] = (trainsplit, data / "wflw")
    results, by_sha = {}, {}
    for m in a.models:  # a model file bundled under two names is evaluated once
        sha = model_info(split_flip(m)[0])["sha256"] + str(split_flip(m)[1])
        if sha in by_sha:
            first = by_sha[sha]
            results[f"{first} = {m}"] = results.pop(first)
            by_sha[sha] = f"{first} = {m}"
            print(f"note: {m} is the same file as {first} (sha256 {sha[:12]}...)")
            continue
        results[m], by_sha[sha] = evaluate_model(m, sets, a.detector), m
    dlib = None if a.no_dlib else run_dlib(*sets["300w"])
    if dlib:
        results[DLIB] = dlib
    (acc_cols, acc), (off_cols, off) = tables(results)
    n300 = len(sets["300w"][0])
    print_table(f"Held-out accuracy, 68 points, inter-ocular NME ({n300} 300W faces, not trained on; "
                f"WFLW: data/wflw68_val.jsonl)", acc_cols, acc)
    print("NME % offset removed: GT-framed, each point's mean signed offset (face frame) subtracted, fitted on the "
          "other half of the faces. e2e: detect_image(search='single'), misses count as failures in FR / AUC.")
    region_cols, regions = region_table(results)
    print_table("NME % per region, mean (median) over faces; e2e: faces found", region_cols, regions)
    part_cols, parts = part_table(results)
    print_table("300W held-out faces per part (AFW+HELEN: the 300W held-out set before LFPW)", part_cols, parts)
    print_table("Convention offset (GT-framed): mean signed offset prediction - label per group, face frame, "
                "inter-ocular units; pt = mean length of the per-point mean offsets", off_cols, off)
    path = write_json("w300", {
        "command": " ".join(["python -m benchmarks.w300", *(argv if argv is not None else sys.argv[1:])]),
        "detector": a.detector, "groups": {g: [r.start, r.stop - 1] for g, r in GROUPS.items()},
        "heldout": {"300w": "fixed by-image hash of '300w/<path>' (train.prepare.is_w300_validation_image), 15 %",
                    "wflw": str(VAL_ANNOTATIONS.relative_to(REPO)),
                    "wflw train→300w": "combined68_val.jsonl faces with extra.wflw_split == 'train'"},
        "results": results, "seconds": time.perf_counter() - t0,
        "markdown": {"accuracy": markdown_table(acc_cols, acc), "regions": markdown_table(region_cols, regions),
                     "parts": markdown_table(part_cols, parts), "offsets": markdown_table(off_cols, off)}}, a.out)
    print(f"results: {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
