"""Training data on 300W semantics from every labelled source: WFLW (98 -> 68, corrected) + 300W AFW/HELEN.

:func:`build_combined_set` writes, with image paths relative to the WFLW folder (the training ``image_root``;
300W photos as ``../300w/<path>``):

- ``combined68_train.jsonl``: the WFLW training faces (test-split and train-split faces on the training photos)
  with the convention correction of :mod:`train.conventions` applied, the 300W training faces (AFW, HELEN, LFPW)
  with their own labels, and (optionally) teacher labels on unlabelled photos (``extra["source"] = "pseudo"``),
  corrected the same way (the teacher was trained on WFLW-derived points);
- ``combined68_val.jsonl``: both held-out splits (:mod:`train.prepare`), WFLW's labels corrected the same way (the
  correction was fitted on training faces only): the 300W held-out faces, the WFLW test-split faces and, when
  ``wflw68_val_trainsplit.jsonl`` exists, the WFLW train-split faces on held-out photos
  (``extra["wflw_split"]`` tells them apart); each face tagged with ``extra["source"]``;
- ``convention_correction.json``: the (68, 2) correction and its per-group summary, and each source's
  horizontal mirror convention (:func:`mirror_shift`).

Every label is also moved to 300W's *mirror* convention: 300W's labels sit ~0.01 inter-ocular right of where a
mirror-consistent labelling would put them (measured, not assumed: :func:`mirror_shift`), so a model trained
with plain flips predicts every 300W point that much to the left. Labels are shifted to 300W's offset and each
face carries ``extra["mirror_shift"]`` (pixels), which :class:`train.dataset.FaceCropDataset` mirrors about.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .annotations import FaceAnnotation, read_annotations, write_annotations
from .conventions import SCHEME, apply_correction, fit_correction, save_correction


def gt_framed_predictions(model, faces: list[FaceAnnotation], root: Path, framing: str | None = None) -> np.ndarray:
    """(B, N, 2) pixel predictions of an exported model (a path, or an engine with ``meta`` and ``infer``) on
    crops framed from the true landmarks (one pass, the crops of the model cards' held-out figure). ``framing``:
    the scheme of the faces' labels when it is not the model's (e.g. ``"300w68"`` labels framing a 98-point
    model: the crop is their bounding box, the predictions keep the model's N points)."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.model.schemes import get_scheme

    from .dataset import FaceCropDataset, crop_to_frame

    engine = model if hasattr(model, "infer") else OnnxRuntimeEngine(model)
    meta = engine.meta
    ds = FaceCropDataset(faces, root, get_scheme(framing or meta.scheme), meta.input_size, None,
                         crop_scale=meta.crop_scale, with_targets=False)
    out = []
    for start in range(0, len(ds), 32):
        items = [ds[i] for i in range(start, min(start + 32, len(ds)))]
        crops = np.stack([it["image"].numpy().transpose(1, 2, 0) for it in items]).astype(np.uint8)
        means = engine.infer(crops)[0]
        out.append(crop_to_frame(means, np.stack([it["to_crop"].numpy() for it in items]), ds.size))
    return np.concatenate(out).astype(np.float64)


def heldout_nme(models: list, heldout: dict[str, tuple[list[FaceAnnotation], Path]]) -> dict[str, list[np.ndarray]]:
    """Per held-out set (name -> (faces, image root), labels in the models' scheme): each model's per-face NME
    on crops framed from the labels (:func:`gt_framed_predictions`), in the order of ``models``."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.model.schemes import get_scheme

    from .metrics import nme_per_face

    scheme = get_scheme(OnnxRuntimeEngine(models[0]).meta.scheme)
    out = {}
    for name, (faces, root) in heldout.items():
        gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
        out[name] = [nme_per_face(gt_framed_predictions(m, faces, root), gt, scheme) for m in models]
    return out


def mirror_shift(model: str | Path, faces: list[FaceAnnotation], root: Path) -> float:
    """How far right (inter-ocular units, mean over ``faces``) a source's labels sit of the mirror-consistent
    position.

    A model trained with flip augmentation cannot learn a horizontal offset ``c`` of the labels: on a photo its
    prediction minus the label is ``d - c`` (``d``: whatever bias the model has), on the mirrored photo with the
    labels mirrored about ``x -> W - 1 - x`` it is ``d + c``. Half the difference is ``c``. (Vertically there is
    no flip, so a model learns the labels' vertical convention as it is.) Measured relative to the face's size,
    which is what a network can learn from a crop (it cannot see how large the face was in its photo).
    """
    import tempfile

    import cv2

    from star_track.model.schemes import get_scheme

    scheme = get_scheme("300w68")
    plain = gt_framed_predictions(model, faces, root)
    mirrored = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, f in enumerate(faces):
            img = cv2.imread(str(root / f.image))
            if img is None:
                raise FileNotFoundError(f"cannot read image {root / f.image}")
            path = Path(tmp) / f"{k}.png"
            cv2.imwrite(str(path), np.ascontiguousarray(img[:, ::-1]))
            pts = f.landmarks.copy()
            pts[:, 0] = img.shape[1] - 1 - pts[:, 0]
            mirrored.append(FaceAnnotation(str(path), pts[scheme.flip_permutation()]))
        flipped = gt_framed_predictions(model, mirrored, Path("/"))
    gt = np.stack([f.landmarks for f in faces]).astype(np.float64)
    gt_m = np.stack([f.landmarks for f in mirrored]).astype(np.float64)
    c_px = ((flipped - gt_m)[..., 0] - (plain - gt)[..., 0]).mean(1) / 2
    return float((c_px / scheme.inter_ocular(gt)).mean())


def _relabelled(faces: list[FaceAnnotation], correction: np.ndarray | None, dx: float, mirror_shift: float,
                source: str | None, image_prefix: str = "") -> list[FaceAnnotation]:
    """Faces moved onto the 300W convention: the per-point ``correction`` (None for 300W's own labels), then
    ``dx`` inter-ocular distances to the right (the mirror convention); tagged with the source and the labels'
    mirror shift in image pixels (``mirror_shift`` inter-ocular distances of this face)."""
    scheme_iod = SCHEME.inter_ocular
    out = []
    for f in faces:
        pts = f.landmarks if correction is None else apply_correction(f.landmarks, correction)
        iod = float(scheme_iod(np.asarray(pts, np.float64)))
        pts = (pts + np.array([dx * iod, 0.0])).astype(np.float32)
        extra = {**f.extra, "source": source or f.extra.get("source", ""),
                 "mirror_shift": round(mirror_shift * iod, 4)}
        if correction is not None:
            extra["labels"] = "wflw68 corrected to 300W"
        out.append(FaceAnnotation(image_prefix + f.image, pts, f.box, f.attributes, f.split, extra))
    return out


def build_combined_set(teacher: Path, data_root: Path, ann_dir: Path, unlabeled: list[FaceAnnotation] = (),
                       ) -> dict[str, Path]:
    """Fit the WFLW -> 300W correction with ``teacher`` (an exported 68-point model; its own bias cancels in the
    correction and in :func:`mirror_shift`, so a model trained on WFLW-derived points or on 300W semantics will do)
    and write the combined annotation files into ``ann_dir``; returns their paths."""
    wflw_train = read_annotations(ann_dir / "wflw68_train.jsonl")
    wflw_val = read_annotations(ann_dir / "wflw68_val.jsonl")
    if (ann_dir / "wflw68_val_trainsplit.jsonl").is_file():
        wflw_val += read_annotations(ann_dir / "wflw68_val_trainsplit.jsonl")
    w300_train = read_annotations(ann_dir / "300w68_train.jsonl")
    w300_val = read_annotations(ann_dir / "300w68_val.jsonl")
    pred_wflw = gt_framed_predictions(teacher, wflw_train, data_root / "wflw")
    pred_300w = gt_framed_predictions(teacher, w300_train, data_root / "300w")
    gt = lambda faces: np.stack([f.landmarks for f in faces]).astype(np.float64)  # noqa: E731
    correction = fit_correction(pred_300w, gt(w300_train), pred_wflw, gt(wflw_train))
    # The mirror convention: 300W's labels sit ~0.01 IOD right of the mirror-consistent position, WFLW's less;
    # the flip-averaged teacher labels where its metadata says (0 for a model trained on WFLW-derived points).
    # Every label is moved to 300W's, and flips mirror about it.
    shift = {"300w": mirror_shift(teacher, w300_train, data_root / "300w"),
             "wflw": mirror_shift(teacher, wflw_train, data_root / "wflw"), "teacher": model_shift(teacher)}
    target = shift["300w"]
    paths = {"correction": save_correction(
        correction, ann_dir / "convention_correction.json", teacher=Path(teacher).name,
        fitted_on={"wflw68_train": len(wflw_train), "300w68_train": len(w300_train)},
        units="face frame: x along the outer-eye axis 36->45, y down the face, outer-eye distance = 1",
        mirror_shift_iod=shift)}
    w300 = str(Path("..") / "300w") + "/"
    train = (_relabelled(wflw_train, correction, target - shift["wflw"], target, "wflw")
             + _relabelled(w300_train, None, 0.0, target, "300w", w300)
             + _relabelled(list(unlabeled), correction, target - shift["teacher"], target, "pseudo"))
    val = (_relabelled(wflw_val, correction, target - shift["wflw"], target, "wflw")
           + _relabelled(w300_val, None, 0.0, target, "300w", w300))
    paths["train"] = write_annotations(train, ann_dir / "combined68_train.jsonl")
    paths["val"] = write_annotations(val, ann_dir / "combined68_val.jsonl")
    return paths


def adopt_mirror_convention(faces: list[FaceAnnotation], correction_file: Path,
                            teacher_shift: float = 0.0) -> list[FaceAnnotation]:
    """Flip-averaged teacher labels, in the teacher's own mirror convention (``teacher_shift``: its
    ``ModelMeta.mirror_shift``, see :func:`model_shift`) -> the mirror convention of
    :func:`build_combined_set`'s files (300W's), for faces labelled later (distillation)."""
    import json

    target = json.loads(Path(correction_file).read_text())["mirror_shift_iod"]["300w"]
    return _relabelled(faces, None, target - teacher_shift, target, None)


def model_shift(model: str | Path) -> float:
    """The mirror shift an exported model declares (``ModelMeta.mirror_shift``; 0 for older models)."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine

    return float(OnnxRuntimeEngine(model).meta.mirror_shift)
