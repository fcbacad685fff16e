"""Training data on 300W semantics from every labelled source: WFLW (98 -> 68, corrected) + 300W AFW/HELEN.

:func:`build_combined_set` writes, with image paths relative to the WFLW folder (the training ``image_root``;
300W photos as ``../300w/<path>``):

- ``combined68_train.jsonl``: the WFLW training faces with the convention correction of :mod:`train.conventions`
  applied, the 300W training faces with their own labels, and (optionally) teacher labels on the unlabeled WFLW
  photos, corrected the same way (the teacher was trained on WFLW-derived points);
- ``combined68_val.jsonl``: both held-out splits, WFLW's labels corrected the same way (the correction was fitted
  on training faces only); each face tagged with ``extra["source"]``;
- ``convention_correction.json``: the (68, 2) correction and its per-group summary.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .annotations import FaceAnnotation, read_annotations, write_annotations
from .conventions import apply_correction, fit_correction, save_correction


def gt_framed_predictions(model: str | Path, faces: list[FaceAnnotation], root: Path) -> np.ndarray:
    """(B, N, 2) pixel predictions of an exported model on crops framed from the true landmarks (one pass, the
    crops of the model cards' held-out figure)."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.schemes import get_scheme

    from .dataset import FaceCropDataset, crop_to_frame

    engine = OnnxRuntimeEngine(model)
    meta = engine.meta
    ds = FaceCropDataset(faces, root, get_scheme(meta.scheme), meta.input_size, None, crop_scale=meta.crop_scale,
                         with_targets=False)
    out = []
    for start in range(0, len(ds), 32):
        items = [ds[i] for i in range(start, min(start + 32, len(ds)))]
        crops = np.stack([it["image"].numpy().transpose(1, 2, 0) for it in items]).astype(np.uint8)
        means = engine.infer(crops)[0]
        out.append(crop_to_frame(means, np.stack([it["to_crop"].numpy() for it in items]), ds.size))
    return np.concatenate(out).astype(np.float64)


def _corrected(faces: list[FaceAnnotation], correction: np.ndarray, source: str) -> list[FaceAnnotation]:
    return [FaceAnnotation(f.image, apply_correction(f.landmarks, correction), f.box, f.attributes, f.split,
                           {**f.extra, "source": source, "labels": "wflw68 corrected to 300W"}) for f in faces]


def _from_300w(faces: list[FaceAnnotation]) -> list[FaceAnnotation]:
    return [FaceAnnotation(str(Path("..") / "300w" / f.image), f.landmarks, f.box, f.attributes, f.split,
                           {**f.extra, "source": "300w"}) for f in faces]


def build_combined_set(teacher: Path, data_root: Path, ann_dir: Path, unlabeled: list[FaceAnnotation] = (),
                       ) -> dict[str, Path]:
    """Fit the WFLW -> 300W correction with ``teacher`` (an exported model trained on WFLW-derived points) and
    write the combined annotation files into ``ann_dir``; returns their paths."""
    wflw_train = read_annotations(ann_dir / "wflw68_train.jsonl")
    wflw_val = read_annotations(ann_dir / "wflw68_val.jsonl")
    w300_train = read_annotations(ann_dir / "300w68_train.jsonl")
    w300_val = read_annotations(ann_dir / "300w68_val.jsonl")
    pred_wflw = gt_framed_predictions(teacher, wflw_train, data_root / "wflw")
    pred_300w = gt_framed_predictions(teacher, w300_train, data_root / "300w")
    gt = lambda faces: np.stack([f.landmarks for f in faces]).astype(np.float64)  # noqa: E731
    correction = fit_correction(pred_300w, gt(w300_train), pred_wflw, gt(wflw_train))
    paths = {"correction": save_correction(
        correction, ann_dir / "convention_correction.json", teacher=Path(teacher).name,
        fitted_on={"wflw68_train": len(wflw_train), "300w68_train": len(w300_train)},
        units="face frame: x along the outer-eye axis 36->45, y down the face, outer-eye distance = 1")}
    train = (_corrected(wflw_train, correction, "wflw") + _from_300w(w300_train)
             + _corrected(list(unlabeled), correction, "wflw_unlabeled"))
    val = _corrected(wflw_val, correction, "wflw") + _from_300w(w300_val)
    paths["train"] = write_annotations(train, ann_dir / "combined68_train.jsonl")
    paths["val"] = write_annotations(val, ann_dir / "combined68_val.jsonl")
    return paths
