"""Accuracy on rolled faces: the held-out photos turned by 0-90 degrees, each pipeline with its own detector.

    python -m benchmarks.roll [--model PATH] [--data ../shared/data] [--angles 0,30,60,90]

Each held-out photo is rotated about its centre (canvas enlarged, nothing cut off) and the true landmarks
with it. Rows: star-track photo mode (``Tracker.detect_image`` as shipped: tiles, and the image turned by
±90/±45 degrees when the upright passes find no face or a rolled one), star-track's single whole-image detector
pass (``search="single"``, no face cap: the detector video mode uses), and dlib HOG (upsample 1) + 68-point ERT.
All star-track rows start new faces from a crop rolled by the detector's eye line. A face counts as found when
a prediction's centre lies inside its rotated landmark box; NME is over the found faces, FR@0.1 counts misses
as failures. BlazeFace and HOG are trained on upright faces: the single pass and dlib miss most faces rolled
past ~45 degrees.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from star_track import Tracker
from train.calibrate import match_to_face

from .common import (DEFAULT_DATA, RESULTS_DIR, DlibPipeline, load_faces, markdown_table, model_info, model_label,
                     photos_of, print_table, write_json)


def rotate(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned counter-clockwise by ``degrees`` on a canvas that holds all of it, and the 2x3 map."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    size = (int(round(h * s + w * c)), int(round(h * c + w * s)))
    m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return cv2.warpAffine(image, m, size, borderMode=cv2.BORDER_CONSTANT), m


def run(model: str | None, data: Path, angles: list[float], limit: int | None = None) -> list[dict]:
    from train.metrics import nme_per_face, summarize
    from star_track.model.schemes import get_scheme

    scheme = get_scheme("300w68")
    faces = load_faces()[:limit]
    photos = len({f.image for f in faces})
    dlib = DlibPipeline(upsample=1)
    rows = []
    with Tracker(model, engine="onnxruntime", smoothing="none", max_faces=64) as tracker:
        for angle in angles:
            preds = {k: np.full((len(faces), 68, 2), np.nan) for k in ("photo", "single", "dlib")}
            seconds = dict.fromkeys(preds, 0.0)
            gt = np.zeros((len(faces), 68, 2))
            for photo, idx in photos_of(faces, data / "wflw"):
                img, m = rotate(photo, angle)
                for i in idx:
                    gt[i] = faces[i].landmarks @ m[:, :2].T + m[:, 2]
                outputs = {}
                for key, search in (("photo", "photo"), ("single", "single")):
                    t0 = time.perf_counter()
                    outputs[key] = tracker.detect_image(img, search=search)
                    seconds[key] += time.perf_counter() - t0
                t0 = time.perf_counter()
                dboxes, dpts = dlib.run(img)
                seconds["dlib"] += time.perf_counter() - t0
                candidates = {k: ([(f.box[:2] + f.box[2:]) / 2 for f in v], [f.landmarks for f in v])
                              for k, v in outputs.items()}
                candidates["dlib"] = ((dboxes[:, :2] + dboxes[:, 2:]) / 2, dpts)
                for key, (centres, points) in candidates.items():
                    for i in idx:
                        j = match_to_face(np.asarray(centres).reshape(-1, 2), gt[i])
                        if j is not None:
                            preds[key][i] = points[j]
            for key, label in (("photo", "star-track photo mode"), ("single", "star-track 1 detector pass"),
                               ("dlib", "dlib HOG + 68")):
                found = np.isfinite(preds[key][:, 0, 0])
                nme = np.where(found, nme_per_face(np.nan_to_num(preds[key]), gt, scheme), np.inf)
                s = summarize(nme, 0.1)
                rows.append({"angle": angle, "pipeline": label, "nme": s["nme"], "fr@0.1": s["fr@0.1"],
                             "auc@0.1": s["auc@0.1"], "found": float(found.mean()), "faces": len(faces),
                             "ms_per_image": 1e3 * seconds[key] / photos})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model path or name (default: the bundled model)")
    p.add_argument("--data", type=Path, default=None, help="shared data folder holding wflw/")
    p.add_argument("--angles", default="0,30,60,90", help="comma-separated roll angles in degrees")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces (quick check)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for roll.json")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(a.model, a.data or DEFAULT_DATA, [float(x) for x in a.angles.split(",")], a.limit)
    cols = ["roll °", "pipeline", "found %", "NME % (found)", "FR@0.1 % (misses = failures)", "AUC@0.1",
            "ms / image"]
    table = [[f"{r['angle']:g}", r["pipeline"], f"{100 * r['found']:.1f}", f"{100 * r['nme']:.2f}",
              f"{100 * r['fr@0.1']:.1f}", f"{r['auc@0.1']:.3f}", f"{r['ms_per_image']:.0f}"] for r in rows]
    print_table(f"Rolled held-out faces ({rows[0]['faces']}), model {model_label(a.model)}", cols, table)
    path = write_json("roll", {
        "command": " ".join(["python -m benchmarks.roll", *(argv if argv is not None else sys.argv[1:])]),
        "model": model_label(a.model), "model_info": model_info(a.model), "seconds": time.perf_counter() - t0,
        "rows": rows, "markdown": markdown_table(cols, table)}, a.out)
    photo = {r["angle"]: r["found"] for r in rows if r["pipeline"] == "star-track photo mode"}
    if 0.0 in photo:
        print("photo mode, found % minus upright: " + ", ".join(f"{a:g}°: {100 * (v - photo[0.0]):+.1f}"
                                                                for a, v in photo.items() if a != 0.0))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
