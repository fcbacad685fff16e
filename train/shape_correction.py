"""Fit a model's shape correction (:mod:`star_track.nn.shape_correction`) on labelled training faces and append it
to the exported model (:mod:`export.shape_correction`).

The fit is ridge regression of the error in the face frame (truth - prediction, in the prediction's frame) on
the predicted shape, over the model's predictions on crops framed from the true landmarks. Each face also counts
mirrored (points permuted by the scheme's flip pairs, x negated), which doubles the faces for ``W`` and keeps it
left/right symmetric; ``b`` comes from the faces as labelled, so a labelling offset that is not mirror-symmetric
(300W's labels sit right of the mirror-consistent position) stays corrected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star_track.model.schemes import LandmarkScheme

RIDGE = 1.0
"""Ridge penalty on ``W`` (face-frame units). Held-out 300W NME of the 68-point models fitted on the weighted
300W + WFLW faces, ridge 0.1 / 0.3 / 1 / 3: star68-fast 3.489 / 3.476 / 3.470 / 3.479 %, star68-accurate
3.483 / 3.470 / 3.463 / 3.476 %, star68-precise 3.205 / 3.194 / 3.186 / 3.189 % (the WFLW held-out faces
alike); star98-fast with the 300W faces added, WFLW 98 points 5.251 / 5.238 / 5.234 / 5.251 %."""

RIDGE_BY_MODEL = {"star68-fast": 0.1}
"""Models fitted at another penalty. star68-fast at ridge 1 scored 0.02 points better on 300W, but under the
default face-level filter its sway lag on the synthetic sequences rose from 1.094 to 1.119 % IOD while
STAR-Kalman's fell to 1.059 (``python -m benchmarks.stability``): issue 27's lag gate, for 0.02 points."""


def ridge_for(model_name: str) -> float:
    """The ridge penalty of a model's correction (:data:`RIDGE`, or its entry in :data:`RIDGE_BY_MODEL`)."""
    return RIDGE_BY_MODEL.get(model_name, RIDGE)


@dataclass(frozen=True)
class CorrectionSet:
    """Labelled training faces of a correction fit, each counting ``weight`` in the least squares. ``labels``: the
    scheme of the faces' labels when it is not the model's (300W's 68 points for a 98-point model): such faces
    are framed from their own labels, score only the points their labels have (the scheme's ``to_68``), and
    shape ``W`` alone: they are centred on their own means, since their mean offset is their labels' convention."""

    name: str
    faces: list
    root: Path
    weight: float = 1.0
    labels: str | None = None


def _frames(pred: np.ndarray, truth: np.ndarray, eyes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and truths (F, N, 2) in each prediction's face frame, float64."""
    import torch

    from star_track.nn.shape_correction import face_frame, into_frame

    p = torch.from_numpy(np.asarray(pred, np.float64))
    frame = face_frame(p, eyes)
    return into_frame(p, frame).numpy(), into_frame(torch.from_numpy(np.asarray(truth, np.float64)), frame).numpy()


def offset_only(scheme: LandmarkScheme) -> list[int]:
    """Points the correction moves by a constant offset alone: the eyes (lids, corners, pupils). A correction that
    depends on the rest of the shape moves the lids with the mouth and the head's turn, and the eye openness
    then dips with speech: on the hand-labelled clips such a fit found the same 5 blinks plus 5 false ones in 24 s
    (none without it), at a cost of 0.02 NME points (3.467 vs 3.489 % on the 300W held-out faces, star68-fast)."""
    return sorted({i for eye in scheme.eyes for i in eye} | set(scheme.pupils or ()))


def fit_correction(pred: np.ndarray, truth: np.ndarray, scheme: LandmarkScheme, ridge: float = RIDGE,
                   weight: np.ndarray | None = None, shape_only: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``W`` (2N, 2N) and ``b`` (2N,) from predictions and true points (F, N, 2), any common image frame; NaN
    marks a point a face's labels do not have. ``weight`` (F,): each face's weight in the least squares (default
    1); ``shape_only`` (F,): faces that shape ``W`` but not ``b`` (see :class:`CorrectionSet`). The
    :func:`offset_only` points get zero rows in ``W``."""
    a, t = _frames(pred, truth, scheme.outer_eye_corners)
    r = t - a
    perm = scheme.flip_permutation()

    def mirror(x: np.ndarray) -> np.ndarray:
        m = x[:, perm].copy()
        m[..., 0] *= -1
        return m

    w = np.ones(len(a)) if weight is None else np.asarray(weight, np.float64)
    own = np.zeros(len(a), bool) if shape_only is None else np.asarray(shape_only, bool)
    X = np.concatenate([a, mirror(a)]).reshape(2 * len(a), -1)
    Y = np.concatenate([r, mirror(r)]).reshape(2 * len(a), -1)
    ww, group = np.concatenate([w, w])[:, None], np.concatenate([own, own])
    for g in (group, ~group):  # each group of faces about its own weighted means
        if g.any():
            X[g] -= (ww[g] * X[g]).sum(0) / ww[g].sum()
            with np.errstate(invalid="ignore"):
                Y[g] -= np.nansum(ww[g] * Y[g], 0) / (ww[g] * np.isfinite(Y[g])).sum(0)
    M = np.zeros((X.shape[1], Y.shape[1]))
    patterns, of_column = np.unique(np.isfinite(Y).T, axis=0, return_inverse=True)
    for k, rows in enumerate(patterns):  # the outputs labelled by the same faces solve together
        cols, x = np.flatnonzero(of_column.ravel() == k), X[rows]
        M[:, cols] = np.linalg.solve(x.T @ (ww[rows] * x) + ridge * np.eye(x.shape[1]),
                                     x.T @ (ww[rows] * Y[rows][:, cols]))
    M[:, [c for i in offset_only(scheme) for c in (2 * i, 2 * i + 1)]] = 0.0
    flat_a, flat_r, wb = a[~own].reshape((~own).sum(), -1), r[~own].reshape((~own).sum(), -1), w[~own]
    b = (wb @ flat_r - (wb @ flat_a) @ M) / wb.sum()  # the labels' own offsets, mirrored or not
    return M.T, b


def apply_correction(pred: np.ndarray, weight: np.ndarray, bias: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """The corrected (F, N, 2) points, as the exported graph computes them (the torch module itself)."""
    import torch

    from star_track.nn.shape_correction import ShapeCorrection

    module = ShapeCorrection(torch.from_numpy(weight), torch.from_numpy(bias), scheme.outer_eye_corners)
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(pred, np.float32))).numpy().astype(np.float64)


def _truths(s: CorrectionSet, scheme: LandmarkScheme) -> np.ndarray:
    """The (F, N, 2) labels of ``s`` in the model's ``scheme``: NaN at the points labels in another scheme lack."""
    from star_track.model.schemes import get_scheme

    labels = np.stack([f.landmarks for f in s.faces]).astype(np.float64)
    if s.labels is None or get_scheme(s.labels).num_points == scheme.num_points:
        return labels
    if get_scheme(s.labels).num_points != 68 or scheme.to_68 is None:
        raise ValueError(f"{s.name}: {s.labels} labels cannot train a {scheme.name} model's correction")
    out = np.full((len(labels), scheme.num_points, 2), np.nan)
    out[:, list(scheme.to_68)] = labels
    return out


def correct_model(model: Path, train_sets: list[CorrectionSet], out: Path,
                  heldout: dict[str, tuple[list, Path]] | None = None, ridge: float | None = None) -> dict:
    """Fit the correction of ``model`` on ``train_sets``, write the model with it appended to ``out`` (checked
    against the torch module on real crops) and score the ``heldout`` sets (labels in the model's scheme) before
    and after; ``ridge`` None: :func:`ridge_for` the model. Returns the report."""
    from export.shape_correction import append_correction, verify_correction
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.model.schemes import get_scheme

    from .combined import gt_framed_predictions, heldout_nme
    from .dataset import label_framed_crops

    meta = OnnxRuntimeEngine(model).meta
    scheme = get_scheme(meta.scheme)
    ridge = ridge_for(meta.name) if ridge is None else ridge
    pred = np.concatenate([gt_framed_predictions(model, s.faces, s.root, framing=s.labels) for s in train_sets])
    truth = np.concatenate([_truths(s, scheme) for s in train_sets])
    weight = np.concatenate([np.full(len(s.faces), s.weight, np.float64) for s in train_sets])
    shape_only = np.concatenate([np.full(len(s.faces), s.labels is not None) for s in train_sets])
    W, b = fit_correction(pred, truth, scheme, ridge, weight, shape_only)
    staged = Path(out).with_name(f".{Path(out).name}.corrected")  # checked against the original before it lands
    append_correction(model, W, b, scheme.outer_eye_corners, staged)
    first = train_sets[0]
    crops = label_framed_crops(first.faces[:8], first.root, scheme, meta.input_size, 8, meta.crop_scale)
    sets = [{"name": s.name, "faces": len(s.faces), "weight": s.weight, **({"labels": s.labels} if s.labels else {})}
            for s in train_sets]
    report: dict = {"model": Path(model).name, "train_sets": sets, "ridge": ridge,
                    "check": verify_correction(staged, model, W, b, scheme.outer_eye_corners, crops), "heldout": {}}
    for name, nme in heldout_nme([model, staged], heldout or {}).items():
        report["heldout"][name] = {"faces": len(nme[0]), "nme_before": float(nme[0].mean()),
                                   "nme_after": float(nme[1].mean()),
                                   "fr10_before": float((nme[0] > 0.1).mean()), "fr10_after": float((nme[1] > 0.1).mean())}
    staged.replace(out)
    return report


W300_WEIGHT = 4.0
"""Weight of a 300W face against a WFLW face in a correction's fit. The 68-point models follow 300W's labels;
the WFLW faces' labels were moved onto them by a per-point offset (``train.combined``), which leaves part of the
two conventions' difference. On 300W faces alone the fit cut star68-fast's held-out 300W NME 3.74 -> 3.42 % but
raised the WFLW faces' 5.42 -> 5.49 %; with the WFLW faces at equal weight 3.59 / 5.07; at weight 4 for 300W
3.47 / 5.21 (FR@10 7.7 -> 5.7 %), both sets better. star98-fast (300W faces shaping W only, ridge 1), 300W
weight 0 / 1 / 2 / 4 / 8: held-out WFLW 98-point NME 5.12 / 5.15 / 5.19 / 5.23 / 5.28 %, its implied 68 points on
the held-out 300W faces, each point's mean offset removed (``benchmarks.w300``), 3.87 / 3.58 / 3.51 / 3.47 /
3.46 % (uncorrected 5.50 / 3.74 %; star68-fast: 3.49 %)."""


def correction_sets(num_points: int, data_root: Path, ann_dir: Path
                    ) -> tuple[list[CorrectionSet], dict[str, tuple[list, Path]], list]:
    """(training sets, held-out sets by name, held-out faces for the uncertainty calibration) of a bundled model
    with ``num_points``: 68 -> the combined 300W + WFLW files (``python -m train ship`` or
    :func:`train.combined.build_combined_set` writes them); 98 -> WFLW's own 98-point labels, plus the 300W
    training faces (``python -m train prepare 300w``) on the 68 points they have, shaping ``W`` only."""
    from .annotations import read_annotations

    wflw = data_root / "wflw"
    if num_points == 98:
        train, val = read_annotations(ann_dir / "wflw98_train.jsonl"), read_annotations(ann_dir / "wflw98_val.jsonl")
        w300 = ann_dir / "300w68_train.jsonl"
        if not w300.is_file():
            raise FileNotFoundError(f"{w300} not found: `python -m train prepare 300w {data_root / '300w'}` writes it")
        return ([CorrectionSet("WFLW", train, wflw),
                 CorrectionSet("300W", read_annotations(w300), data_root / "300w", W300_WEIGHT, labels="300w68")],
                {"wflw98_val": (val, wflw)}, val)
    if num_points != 68:
        raise ValueError(f"no training faces for a {num_points}-point model")
    if not (ann_dir / "combined68_train.jsonl").is_file():
        raise FileNotFoundError(f"{ann_dir / 'combined68_train.jsonl'} not found: `python -m train ship` writes it "
                                "(or train.combined.build_combined_set with any 68-point model)")
    train, val = read_annotations(ann_dir / "combined68_train.jsonl"), read_annotations(ann_dir / "combined68_val.jsonl")
    is_300w = lambda f: f.image.startswith("../300w")  # noqa: E731 (combined files: 300W paths from wflw/)
    return ([CorrectionSet("300W", [f for f in train if is_300w(f)], wflw, W300_WEIGHT),
             CorrectionSet("WFLW", [f for f in train if not is_300w(f)], wflw)],
            {"300w_val": ([f for f in val if is_300w(f)], wflw), "wflw_val": ([f for f in val if not is_300w(f)], wflw)},
            val)


def correction_row(report: dict) -> str:
    """The model card's line for a :func:`correct_model` report."""
    held = "; ".join(f"{name} ({r['faces']} faces) {100 * r['nme_before']:.2f} -> **{100 * r['nme_after']:.2f} %**, "
                     f"FR@10 {100 * r['fr10_before']:.1f} -> {100 * r['fr10_after']:.1f} %"
                     for name, r in report["heldout"].items())
    faces = " + ".join(f"{t['faces']} {t['name']} (weight {t['weight']:g}"
                       + (f"; {t['labels']} labels, shaping W only)" if t.get("labels") else ")")
                       for t in report["train_sets"])
    return (f"linear, in the face frame (`star_track.nn.shape_correction`, appended to the graph after the decoding; "
            f"the eyes by a constant offset only), fitted on the model's predictions for the training faces: {faces}, "
            f"ridge {report['ridge']:g}, mirrored faces too; "
            f"held-out NME without -> with it, crops framed from the true landmarks: {held}. "
            f"`python -m train shape-correction`")


def update_card(card: Path, report: dict, uncertainty: dict) -> None:
    """Rewrite a model card's ``shape correction`` and ``uncertainty calibration`` rows (the row is added before
    the calibration's when the card has none) and the model file's size."""
    import re

    from .ship import uncertainty_row

    rows = {"shape correction": correction_row(report), "uncertainty calibration": uncertainty_row(uncertainty)}
    lines = card.read_text().splitlines()
    if not any(line.startswith("| shape correction |") for line in lines):
        at = next(i for i, line in enumerate(lines) if line.startswith("| uncertainty calibration |"))
        lines.insert(at, "| shape correction | |")
    for i, line in enumerate(lines):
        for key, row in rows.items():
            if line.startswith(f"| {key} |"):
                lines[i] = f"| {key} | {row} |"
    size = f"{card.with_suffix('.onnx').stat().st_size / 1e6:.1f} MB"
    lines = [re.sub(r"^(\| file \| `[^`]+`, )[0-9.]+ MB", lambda m: m.group(1) + size, line) for line in lines]
    card.write_text("\n".join(lines) + "\n")
