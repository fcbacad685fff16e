"""Shared helpers for the benchmark scripts: paths, held-out faces, dlib baseline, tables and JSON results."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from train.calibrate import match_to_face
from train.machine import cpu_name

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
DOCS_DIR = REPO / "docs"
DEFAULT_DATA = Path(os.environ.get("STAR_TRACK_DATA", REPO.parent / "shared" / "data"))
"""The shared data folder (holds ``wflw/`` and ``videos/``); override with ``$STAR_TRACK_DATA`` or ``--data``."""
VAL_ANNOTATIONS = REPO / "data" / "wflw68_val.jsonl"
"""The held-out split (written by ``python -m train prepare``), never seen in training."""
COMBINED_VAL = REPO / "data" / "combined68_val.jsonl"
"""Both held-out splits on 300W semantics (WFLW's labels moved by :mod:`train.combined`), from ``train ship``."""
WFLW98_VAL = REPO / "data" / "wflw98_val.jsonl"
"""The held-out WFLW faces with their official 98-point labels (``python -m train prepare wflw68-dev``)."""
TRAIN_ANNOTATIONS = REPO / "data" / "wflw68_train.jsonl"
"""The training split: used only to fit box conventions, never for a reported figure."""


def load_faces(path: str | Path = VAL_ANNOTATIONS) -> list:
    """68-point faces (:class:`train.annotations.FaceAnnotation`) of a split, by default the held-out one."""
    from train.annotations import read_annotations

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: create it with `python -m train prepare wflw68 ...` "
                         "(train.prepare.prepare_shared_wflw68)")
    return read_annotations(path)


def dlib_predictor_path() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` from the face-recognition-models package (not imported:
    its ``__init__`` needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise SystemExit('dlib baseline needs: pip install "star-track[bench]"')
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise SystemExit(f"dlib 68-point model missing: {path}")
    return path


class DlibPipeline:
    """The classic baseline: dlib HOG face detector + 68-point ERT shape predictor (grayscale input)."""

    def __init__(self, upsample: int = 1):
        import dlib

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_predictor_path()))
        self.upsample = int(upsample)

    @staticmethod
    def gray(image_bgr: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """(K, 4) x1, y1, x2, y2 boxes."""
        rects = self.detector(gray, self.upsample)
        return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float64).reshape(-1, 4)

    def landmarks(self, gray: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """(68, 2) points for one box."""
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        shape = self.predictor(gray, self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    def run(self, image_bgr: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Detect every face and predict its landmarks: (boxes, [points per box])."""
        g = self.gray(image_bgr)
        boxes = self.detect(g)
        return boxes, [self.landmarks(g, b) for b in boxes]


match_to_gt = match_to_face  # the same matching rule as the detector calibration


def model_label(model: str | None) -> str:
    """The model's name and file as reported in results."""
    from star_track.model.registry import resolve_model

    path = resolve_model(model)
    return path.name


def model_info(model: str | None) -> dict[str, str]:
    """Model file name and sha256 (recorded with results)."""
    from star_track.hashing import sha256_file
    from star_track.model.registry import resolve_model

    path = resolve_model(model)
    return {"file": path.name, "sha256": sha256_file(path)}


def environment() -> dict[str, Any]:
    """Machine description stored with every result file."""
    import onnxruntime

    return {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "processor": cpu_name(), "onnxruntime": onnxruntime.__version__,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "git_commit": _git("rev-parse", "HEAD"), "git_dirty_star_track": bool(_git("status", "--porcelain",
                                                                                      "star_track")),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _git(*args: str) -> str:
    import subprocess

    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else str(v)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(name: str, payload: Mapping[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` (plus the environment) to ``out_dir/name.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(_jsonable({**payload, "environment": environment()}), indent=1) + "\n")
    return path


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], console: Any = None) -> None:
    """A rich table; floats are printed as given (format them before)."""
    from rich.table import Table

    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*(str(v) for v in r))
    (console or make_console()).print(table)


def make_console() -> Any:
    """A rich console that does not squeeze tables when stdout is a file or pipe."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as GitHub markdown (for benchmarks/README.md)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def photos_of(faces: list, root: Path) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Each photo of ``faces`` once (BGR, read from ``root``) with the indices of its faces; an unreadable photo
    ends the benchmark with one line."""
    by_image: dict[str, list[int]] = {}
    for i, f in enumerate(faces):
        by_image.setdefault(f.image, []).append(i)
    for image, idx in by_image.items():
        img = cv2.imread(str(root / image))
        if img is None:
            raise SystemExit(f"cannot read {root / image}")
        yield img, idx


Predictor = Callable[[np.ndarray], tuple[np.ndarray, Sequence[np.ndarray]]]
"""Image -> (K, 4) x1, y1, x2, y2 boxes and K landmark arrays of the faces a pipeline returns."""


def match_photo(gts: Sequence[np.ndarray], boxes: np.ndarray,
                points: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true faces of one photo matched to a pipeline's returned faces (:func:`match_to_gt`: nearest box
    centre inside the landmark bounding box): ((len(gts), n, 2) points and (len(gts), 4) boxes, NaN where
    missed; found mask)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    preds, matched = np.full((len(gts), n, 2), np.nan), np.full((len(gts), 4), np.nan)
    found = np.zeros(len(gts), bool)
    for i, gt in enumerate(gts):
        j = match_to_gt(centres, gt)
        if j is not None:
            preds[i], matched[i], found[i] = points[j], boxes[j], True
    return preds, matched, found


def photo_mode(predict: Predictor, faces: list, root: Path,
               n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A pipeline's photo-mode predictions for every face, matched photo by photo: (preds, boxes, found,
    seconds spent in ``predict``)."""
    preds, boxes = np.full((len(faces), n, 2), np.nan), np.full((len(faces), 4), np.nan)
    found, seconds = np.zeros(len(faces), bool), 0.0
    for img, idx in photos_of(faces, root):
        t0 = time.perf_counter()
        got_boxes, points = predict(img)
        seconds += time.perf_counter() - t0
        preds[idx], boxes[idx], found[idx] = match_photo([faces[i].landmarks for i in idx], got_boxes, points, n)
    return preds, boxes, found, seconds


def per_face_nme(pred: np.ndarray, gt: np.ndarray, found: np.ndarray, scheme) -> np.ndarray:
    """Inter-ocular NME per face, inf where the face was missed (a failure in FR and AUC)."""
    from train.metrics import nme_per_face

    return np.where(found, nme_per_face(np.nan_to_num(pred), gt, scheme), np.inf)


def region_nme(pred: np.ndarray, gt: np.ndarray, scheme, regions: Mapping[str, Sequence[int]]
               ) -> dict[str, dict[str, float]]:
    """Per region: mean and median over faces of each face's mean point error in the region / outer-eye distance."""
    err = np.linalg.norm(pred - gt, axis=-1) / scheme.inter_ocular(gt)[:, None]
    out = {}
    for name, idx in regions.items():
        per_face = err[:, list(idx)].mean(1)
        out[name] = {"mean": float(per_face.mean()), "median": float(np.median(per_face))}
    return out


def dlib_pipeline():
    """dlib's HOG + 68-point pipeline, or None (with one line saying why) when the ``[bench]`` extra is missing."""
    try:
        return DlibPipeline(upsample=1)
    except (ImportError, SystemExit) as exc:
        print(f"dlib: not installed, its rows are skipped ({exc}; pip install -e \".[bench]\")")
        return None
