"""The 98-point model (issue 25 item 4): ``star98-fast``, WFLW's scheme (33 contour points, full brows, pupils).

Same network and cost as the bundled ``star68-fast`` except the three 1x1 output heads, and started from it: the
backbone and the edge heads (the two schemes have the same 9 named edges) are copied, and each of the 98 heatmap
and point-map heads starts as the inverse-distance blend of the two 68-point heads nearest to it on the mean WFLW
shape (a point the 68 scheme also has copies its head). Then trained on every 98-point face of the training
photos (WFLW test- and train-split faces with official labels; 300W has no 98-point labels) and exported with
its card. Held out: the WFLW photos of the fixed split (:func:`train.prepare.is_wflw_validation_image`), both
official splits' faces on them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from star_track.model import BUNDLED_DIR
from star_track.model.schemes import W300_68, WFLW_98

from .annotations import read_annotations, write_annotations
from .config import PRESETS
from .ship import FAST_NAME, WFLW_TERMS, _calibrate, _crops, _export_with_card, _faces_set, _onnx_network

FAST98_NAME = "star98-fast"
FAST98_PRESET = "fast98-dev"


def head_blend(shapes: np.ndarray) -> np.ndarray:
    """(98, 68) weights from WFLW faces' 98 points ``shapes`` (F, 98, 2): each WFLW point's starting head as a
    blend of 68-point heads (rows sum to 1; a point the 68 scheme also has is a one-hot row)."""
    pts = np.asarray(shapes, np.float64)
    iod = WFLW_98.inter_ocular(pts)
    mean = ((pts - pts.mean(1, keepdims=True)) / iod[:, None, None]).mean(0)
    to_68 = np.asarray(WFLW_98.to_68)
    blend = np.zeros((98, 68))
    blend[to_68, np.arange(68)] = 1.0  # to_68 is one-to-one: each shared point copies its own head
    for i in sorted(set(range(98)) - set(WFLW_98.to_68)):
        d = np.linalg.norm(mean[to_68] - mean[i], axis=1)
        near = np.argsort(d)[:2]
        w = 1.0 / np.maximum(d[near], 1e-6)
        blend[i, near] = w / w.sum()
    return blend


def init_from_68(fast: Path, network, crops: np.ndarray, blend: np.ndarray, out: Path) -> Path:
    """Checkpoint ``out`` of the 98-point ``network`` started from the 68-point ONNX model ``fast`` (same
    network otherwise); ``crops``: face crops for :func:`train.onnx_weights.network_from_onnx`."""
    import torch

    from star_track.nn.checkpoint import write_checkpoint
    from star_track.nn.network import StarNet

    from .onnx_weights import network_from_onnx

    net68, _ = network_from_onnx(fast, crops)
    state = StarNet(network).state_dict()
    mix = torch.from_numpy(blend).float()
    for key, value in net68.state_dict().items():
        if key in state and state[key].shape == value.shape:
            state[key] = value
        elif key.startswith(("out_heatmaps.", "out_pointmaps.")):  # (68, C, 1, 1) weights, (68,) biases
            state[key] = (mix @ value.reshape(68, -1)).reshape(state[key].shape)
        elif key.startswith(("merge_heatmaps.", "merge_pointmaps.")) and key.endswith("weight"):
            # (C, 68, 1, 1): the next stack reads the 98 maps' channels of the 68 points, as it read those
            state[key] = torch.zeros_like(state[key])
            state[key][:, list(WFLW_98.to_68)] = value
    write_checkpoint(out, {"config": network.to_dict(), "model": state, "ema": None, "epoch": -1,
                           "best": float("nan"), "source_onnx": str(fast)})
    return out


def ship_fast98(data_root: Path, fast: Path = BUNDLED_DIR / f"{FAST_NAME}.onnx",
                run_dir: Path = Path("runs") / "fast98", ann_dir: Path = Path("data"),
                out_dir: Path = Path("runs") / "candidates", train_first: bool = True,
                workers: int | None = None) -> Path:
    """Train (resumable: run it again and it continues from ``run_dir/last.pt``) and export ``star98-fast``
    with its card to ``out_dir``."""
    from star_track.nn.network import NetworkConfig

    from .prepare import prepare_shared_wflw68
    from .trainer import train

    wflw = data_root / "wflw"
    if train_first:
        prepare_shared_wflw68(wflw, ann_dir)
    train_path, val_path = ann_dir / "wflw98_train.jsonl", ann_dir / "wflw98_val.jsonl"
    network = NetworkConfig.from_dict({**_onnx_network(fast), "scheme": "wflw98"})
    init = run_dir / "init_from_star68_fast.pt"
    cfg = replace(PRESETS[FAST98_PRESET], network=network, train_annotations=str(train_path),
                  val_annotations=str(val_path), image_root=str(wflw), init_weights=str(init))
    cfg = cfg.with_overrides(workers=workers)
    train_faces = read_annotations(train_path)  # written by the prepare step when training
    if train_first:
        if not init.is_file():
            crops = _crops(ann_dir / "wflw68_train.jsonl", wflw, replace(cfg, network=replace(network, scheme="300w68")))
            shapes = np.stack([f.landmarks for f in train_faces])
            init_from_68(fast, network, crops, head_blend(shapes), init)
        train(cfg, run_dir, resume=True)
    note = (f" Started from `{fast.stem}` (`train.ship98.init_from_68`: backbone and edge heads copied, each "
            "98-point head a blend of the nearest 68-point heads) and trained on the official 98-point labels.")
    return _export98(run_dir, cfg, train_faces, out_dir, note)


def ship_fast98_300w(data_root: Path, first: Path = Path("runs") / "fast98",
                     first_model: Path = Path("runs") / "candidates" / f"{FAST98_NAME}.onnx",
                     run_dir: Path = Path("runs") / "fast98-300w", ann_dir: Path = Path("data"),
                     out_dir: Path = Path("runs") / "candidates" / "fast98-300w", train_first: bool = True,
                     workers: int | None = None) -> Path:
    """The second cycle (:data:`FAST98_300W`): ``first/last.pt`` trained on the WFLW faces plus the 300W training
    faces as 98-point faces (:func:`w300_as_98` with ``first_model``, the first cycle's export; the set is written
    once to ``ann_dir/wflw98_300w_train.jsonl``), exported to ``out_dir``. Resumable like the first."""
    import json

    from star_track.nn.network import NetworkConfig

    from .prepare import prepare_300w
    from .trainer import train

    wflw, train_path = data_root / "wflw", ann_dir / "wflw98_300w_train.jsonl"
    if train_first and not train_path.is_file():
        wflw98 = read_annotations(ann_dir / "wflw98_train.jsonl")
        if not (ann_dir / "300w68_train.jsonl").is_file():
            prepare_300w(data_root / "300w", ann_dir, allow_partial=True)
        shift = json.loads((ann_dir / "convention_correction.json").read_text())["mirror_shift_iod"]
        w300 = w300_as_98(first_model, read_annotations(ann_dir / "300w68_train.jsonl"), data_root / "300w",
                          wflw98, wflw, shift)
        write_annotations(wflw98 + w300, train_path)
    cfg = replace(PRESETS[FAST98_PRESET], **FAST98_300W, network=NetworkConfig.from_dict(_onnx_network(first_model)),
                  train_annotations=str(train_path), val_annotations=str(ann_dir / "wflw98_val.jsonl"),
                  image_root=str(wflw), init_weights=str(first / "last.pt")).with_overrides(workers=workers)
    if train_first:
        train(cfg, run_dir, resume=True)
    train_faces = read_annotations(train_path)
    note = (f" Second cycle from the first cycle's weights ({cfg.epochs} epochs, Adam lr {cfg.lr}) with the 300W "
            "training faces added as 98-point faces (`train.ship98.w300_as_98`: 300W's 68 labels moved onto "
            "WFLW's conventions, the other 30 points from the first cycle). Built by `python -m train ship --fast98` "
            "then `python -m train ship --fast98-300w` (add `--threads 1` beside other work).")
    return _export98(run_dir, cfg, train_faces, out_dir, note)


def _export98(run_dir: Path, cfg, train_faces: list, out_dir: Path, note: str) -> Path:
    """Box calibrations on the WFLW training faces, then :func:`train.ship._export_with_card` with the held-out
    WFLW faces, their two official splits reported apart."""
    wflw = Path(cfg.image_root)
    calibrations, calib_stats = _calibrate([f for f in train_faces if f.extra.get("source") != "300w"], wflw)
    val = read_annotations(Path(cfg.val_annotations))
    splits = {f"WFLW held-out photos, {s}-split faces": _faces_set(
        [f for f in val if f.extra.get("wflw_split") == s], wflw, cfg) for s in ("test", "train")}
    return _export_with_card(run_dir, cfg, FAST98_NAME, out_dir / f"{FAST98_NAME}.onnx",
                             _faces_set(val, wflw, cfg), calibrations, calib_stats, FAST98_PRESET, note,
                             _data_section(train_faces, len(val)), splits=splits, terms=WFLW_TERMS)


def _data_section(train_faces: list, heldout: int) -> str:
    n = {k: sum(f.extra.get("wflw_split") == k for f in train_faces) for k in ("test", "train", "300w")}
    w300 = (f" plus {n['300w']} 300W training faces (AFW, HELEN, LFPW; `train.ship98.w300_as_98`: 68 labelled "
            "points moved onto WFLW's conventions, 30 from the first cycle's model); 300W is also "
            "non-commercial.") if n["300w"] else ""
    return f"""## Training data and terms
{n['test'] + n['train']} faces with official WFLW 98-point labels on the training photos of `shared/data/wflw`
(WIDER FACE images): {n['test']} WFLW *test*-split faces and {n['train']} *train*-split faces;{w300} {heldout} faces on the
held-out photos (split **by image** with a fixed hash, `train.prepare.is_wflw_validation_image`, 15 % of the
photos) were never trained on. Because WFLW test faces are among the training faces, the held-out figures are
not comparable with published WFLW results. WFLW and WIDER FACE are provided by their authors for
**non-commercial research**; these weights inherit that restriction."""


FAST98_300W = dict(epochs=16, lr=5e-4, milestones=(0.6, 0.85), eval_every=4)
"""The second cycle (``--fast98-300w``): the first cycle's weights on the WFLW faces plus the 300W training faces
(:func:`w300_as_98`). The first cycle's held-out NME had flattened at 5.57 % over its last 15 epochs."""


def fill_unlabelled(pred98: np.ndarray, labels68: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """(F, 98, 2): ``labels68`` (F, 68, 2) at the 68 shared points, and each other point's prediction in
    ``pred98`` moved by the ``blend`` (98, 68) of the shared points' residuals (labels minus predictions)."""
    residual = labels68 - pred98[:, list(WFLW_98.to_68)]
    return pred98 + np.einsum("ij,fjd->fid", blend, residual)


def w300_as_98(model: Path, faces68: list, w300_root: Path, wflw98: list, wflw_root: Path,
               shift: dict) -> list:
    """300W training faces (``faces68``, 300W's own 68 points) as 98-point faces on WFLW's conventions.

    The 68 points the schemes share: 300W's labels moved onto WFLW's definition by the per-point correction
    :func:`train.conventions.fit_correction` fits with ``model`` (a 98-point model, reduced to 68; its own bias
    cancels) on these faces and the WFLW faces ``wflw98``, and by the two sources' mirror offsets ``shift``
    (``{"300w": .., "wflw": ..}`` inter-ocular units, :func:`train.combined.mirror_shift`). The 30 points 300W
    does not label: ``model``'s own prediction, moved by the blend (:func:`head_blend`) of its neighbours'
    residuals, so they follow the labelled points.
    """
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine

    from .annotations import FaceAnnotation
    from .combined import gt_framed_predictions
    from .conventions import apply_correction, fit_correction

    to_68 = list(WFLW_98.to_68)
    blend = head_blend(np.stack([f.landmarks for f in wflw98]))
    framed = [replace(f, landmarks=(blend @ f.landmarks).astype(np.float32)) for f in faces68]  # 98-point framing
    engine = OnnxRuntimeEngine(model)  # one session for both sets
    pred = gt_framed_predictions(engine, framed, w300_root)
    pred_wflw = gt_framed_predictions(engine, wflw98, wflw_root)
    gt = np.stack([f.landmarks for f in faces68]).astype(np.float64)
    gt_wflw = np.stack([f.landmarks for f in wflw98]).astype(np.float64)[:, to_68]
    correction = fit_correction(pred[:, to_68], gt, pred_wflw[:, to_68], gt_wflw)  # WFLW -> 300W
    target = apply_correction(gt, -correction).astype(np.float64)
    iod = W300_68.inter_ocular(target)
    target[..., 0] += ((shift["wflw"] - shift["300w"]) * iod)[:, None]
    filled = fill_unlabelled(pred, target, blend)
    return [FaceAnnotation(str(Path("..") / "300w" / f.image), filled[k].astype(np.float32), f.box, f.attributes,
                           "train", {"source": "300w", "wflw_split": "300w",
                                     "labels": "300w68 on WFLW conventions + 30 points of the first cycle"})
            for k, f in enumerate(faces68)]
