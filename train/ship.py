"""Build the bundled default model from ``shared/data``: prepare -> train the teacher -> calibrate the detector
boxes -> pseudo-label the unlabeled photos -> fine-tune the student on labelled + pseudo-labelled faces ->
export -> model card.

One command regenerates ``star_track/models/default.onnx`` and ``default.md``::

    python -m train ship --data ../shared/data

Every step is resumable (training continues from ``runs/<preset>/last.pt``, then ``runs/<preset>-self``). The
shipped weights are the EMA weights of the LAST epoch, so the held-out NME on the card is not selected on the
held-out faces.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from star_track.model_meta import ModelMeta

from .annotations import read_annotations
from .config import PRESETS

MODELS_DIR = Path(__file__).resolve().parents[1] / "star_track" / "models"
PRESET = "compact68x2-dev"
SELF_TRAINING = dict(epochs=40, lr=1e-3)  # the student's fine-tuning schedule


def ship(data_root: Path, run_dir: Path | None = None, ann_dir: Path = Path("data"),
         out_dir: Path = MODELS_DIR, train_first: bool = True, preset: str = PRESET,
         self_training: bool = True) -> Path:
    """Build ``out_dir/default.onnx`` + ``default.md``; with ``train_first=False`` export existing runs."""
    import torch

    from export.onnx_export import export_onnx, verify_onnx

    from .evaluate import load_network
    from .prepare import prepare_shared_wflw68
    from .trainer import train

    run_dir = run_dir or Path("runs") / preset
    wflw = data_root / "wflw"
    paths = prepare_shared_wflw68(wflw, ann_dir)
    cfg = replace(PRESETS[preset], train_annotations=str(paths["train"]), val_annotations=str(paths["val"]),
                  image_root=str(wflw))
    if train_first:
        train(cfg, run_dir, resume=True)
    train_faces = read_annotations(paths["train"])
    calibrations, calib_stats = _calibrate(train_faces, wflw)
    val_set = _val_set(paths["val"], wflw, cfg)
    final_dir, final_cfg, self_note = run_dir, cfg, ""
    if self_training:
        teacher_val = _heldout(load_network(run_dir / "last.pt"), val_set)
        final_dir = run_dir.with_name(run_dir.name + "-self")
        final_cfg = replace(cfg, **SELF_TRAINING, init_weights=str(run_dir / "last.pt"),
                            train_annotations=str(ann_dir / "wflw68_train_pseudo.jsonl"))
        pseudo = _self_train(data_root, run_dir, final_dir, final_cfg, train_faces, calibrations, teacher_val,
                             train_first)
        self_note = (f"\n\nThen **self-training**: that model (held-out NME {100 * teacher_val['nme']:.2f} %) "
                     f"labelled {pseudo} faces in the unlabeled WFLW *train* photos of `shared/data/wflw_unlabeled`"
                     " (its own detector and tracker framing, flip-averaged predictions, confidence >= 0.7, faces"
                     f" >= 80 px), and this model was fine-tuned from it on the labelled + pseudo-labelled faces "
                     f"for {final_cfg.epochs} epochs at Adam lr {final_cfg.lr} (`train.pseudo_label`).")
    net = load_network(final_dir / "last.pt")
    last_epoch = torch.load(final_dir / "last.pt", map_location="cpu", weights_only=False)["epoch"]
    val = _heldout(net, val_set)
    meta = _meta(final_cfg, calibrations, val, last_epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(net, meta, out_dir / "default.onnx")
    crops = np.stack([val_set[i]["image"].numpy().transpose(1, 2, 0) for i in range(8)]).astype(np.uint8)
    parity = verify_onnx(onnx_path, net, crops)  # on real held-out face crops
    if not parity.ok:
        raise RuntimeError(f"exported model disagrees with PyTorch: {parity}")
    latency = _cpu_latency_ms(onnx_path, cfg.network.input_size)
    card = _model_card(meta, cfg, val, calib_stats, latency, onnx_path, len(train_faces), str(parity), preset,
                       self_note)
    (out_dir / "default.md").write_text(card)
    print(card)
    return onnx_path


def _self_train(data_root: Path, teacher_dir: Path, student_dir: Path, student_cfg, train_faces: list,
                calibrations: dict, teacher_val: dict, train_first: bool) -> int:
    """Teacher -> pseudo-labels on ``wflw_unlabeled`` -> student run; returns the number of pseudo-labels."""
    from export.onnx_export import export_onnx

    from .annotations import write_annotations
    from .evaluate import load_network
    from .pseudo_label import pseudo_label
    from .trainer import train

    pseudo_path = Path(student_cfg.train_annotations)
    if train_first:
        unlabeled = data_root / "wflw_unlabeled"
        if not unlabeled.is_dir():
            raise FileNotFoundError(f"{unlabeled} not found: self-training needs the unlabeled photos "
                                    "(or pass --no-self-training)")
        teacher = export_onnx(load_network(teacher_dir / "last.pt"),
                              _meta(student_cfg, calibrations, teacher_val, epoch=-1),  # -1: the teacher
                              teacher_dir / "teacher.onnx")
        faces = pseudo_label(teacher, unlabeled, relative_to=data_root / "wflw")
        write_annotations(train_faces + faces, pseudo_path)
        train(student_cfg, student_dir, resume=True)
    return sum(1 for _ in open(pseudo_path)) - len(train_faces)


def _calibrate(train_faces: list, wflw: Path) -> tuple[dict, dict]:
    from .calibrate import fit_box_calibration

    calibrations, stats = {}, {}
    for det in ("full", "short"):
        calibrations[det], stats[det] = fit_box_calibration(train_faces, wflw, det)
    return calibrations, stats


def _val_set(path: Path, wflw: Path, cfg):
    from star_track.schemes import get_scheme

    from .dataset import FaceCropDataset

    return FaceCropDataset(read_annotations(path), wflw, get_scheme(cfg.network.scheme), cfg.network.input_size,
                           None, with_targets=False)


def _heldout(net, val_set) -> dict:
    import torch

    from .metrics import summarize
    from .trainer import evaluate_model

    return summarize(evaluate_model(net, val_set, torch.device("cpu"), "inter_ocular"))


def _meta(cfg, calibrations: dict, val: dict, epoch: int) -> ModelMeta:
    return ModelMeta(
        name="star68-compact", scheme=cfg.network.scheme, input_size=cfg.network.input_size,
        network=cfg.network.to_dict(), box_calibration=calibrations["full"], box_calibrations=calibrations,
        extra={"heldout_nme_gt_crop": round(val["nme"], 5), "heldout_faces": val["count"], "epoch": epoch,
               "license": "weights trained on WFLW (non-commercial research use only)"})


def _cpu_latency_ms(onnx_path: Path, size: int, repeats: int = 50) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
    for _ in range(5):
        sess.run(None, {"images": x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {"images": x})
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def _model_card(meta: ModelMeta, cfg, val: dict, calib: dict, latency: float, path: Path, n_train: int,
                parity: str, preset: str, self_note: str = "") -> str:
    net = cfg.network
    size_mb = path.stat().st_size / 1e6
    return f"""# star68-compact — the bundled default model

| | |
|---|---|
| architecture | STAR stacked hourglass (ADNet attention heads), {net.num_stacks} stack{"s" if net.num_stacks > 1 else ""} x {net.channels} channels, hourglass depth {net.depth}, input {net.input_size}x{net.input_size} BGR, heatmaps {net.heatmap_size}x{net.heatmap_size} |
| landmark scheme | 300W 68 points (`{meta.scheme}`) |
| outputs | landmarks (B,68,2) and STAR covariance (B,68,2,2), decoded in the graph |
| file | `default.onnx`, {size_mb:.1f} MB, opset 17; ONNX vs PyTorch on 8 held-out crops: {parity} |
| CPU latency | {latency:.1f} ms per face, ONNX Runtime, batch 1, this build machine (2 cores) |
| held-out NME | **{100 * val['nme']:.2f} %** inter-ocular (outer eye corners), FR@10 {100 * val['fr@0.1']:.1f} %, AUC@10 {val['auc@0.1']:.3f}, on {val['count']} held-out faces, crops framed from the true landmarks (last epoch, EMA weights; end-to-end figures with the detector are in `benchmarks/README.md`) |
| detector calibration | BlazeFace box -> crop (dx, dy, k): full {tuple(round(v, 4) for v in meta.box_calibrations['full'])} ({calib['full']['matched']}/{calib['full']['faces']} faces detected), short {tuple(round(v, 4) for v in meta.box_calibrations['short'])} ({calib['short']['matched']}/{calib['short']['faces']}) |

## Training data and terms
{n_train} faces on the WFLW test photos in `shared/data/wflw` (WIDER FACE images), split **by image** with a
fixed hash (`train.prepare.is_validation_image`, 15 % of images held out; training never sees them). Labels:
official WFLW 98-point annotations reduced to 68 points where available (514 of 660 faces), otherwise the
third-party 68-point conversion. WFLW and WIDER FACE are provided by their authors for **non-commercial
research**; these weights inherit that restriction. Because the faces are WFLW *test* images, this model has
no clean WFLW benchmark number and must not be compared with published WFLW results.

## Training
`python -m train ship --data ../shared/data` (preset `{preset}`: {cfg.epochs} epochs, batch {cfg.batch_size},
Adam lr {cfg.lr}, steps at {', '.join(str(m) for m in cfg.milestones)} of the schedule, STAR loss {cfg.star_version}
+ AWing on point and edge maps, EMA, the spec's augmentation with flips).{self_note} CPU only.

## Limitations
Small training set (about {n_train} faces): expect larger errors on extreme poses, heavy occlusion and
faces unlike WIDER FACE photos. Users with the research weights can import the official STAR checkpoints
(`star-track models import`).
"""
