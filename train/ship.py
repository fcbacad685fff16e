"""Build the bundled models from ``shared/data``.

1. **star68-accurate** (2 stacks x 128, bottleneck blocks): prepare -> train the teacher -> calibrate the
   detector boxes -> pseudo-label the unlabeled photos -> fine-tune a student on labelled + pseudo-labelled
   faces -> export ``star68-accurate.onnx`` + card.
2. **star68-fast** (1 stack x 64, inverted-residual blocks): distillation data from (1) on every photo and clip
   frame (:mod:`train.distill`) -> train from scratch in two cycles -> export ``star68-fast.onnx`` + card.

Which of the two ``"default"`` means is :data:`star_track.model_registry.DEFAULT_BUNDLED`.

One command regenerates both::

    python -m train ship --data ../shared/data

Every step is resumable (training continues from ``runs/<preset>/last.pt``). The shipped weights are the EMA
weights of the LAST epoch, so the held-out NME on the cards is not selected on the held-out faces.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from star_track.model_meta import ModelMeta

from .annotations import read_annotations
from .config import PRESETS

MODELS_DIR = Path(__file__).resolve().parents[1] / "star_track" / "models"
PRESET = "compact68x2-dev"
FAST_PRESET = "fast68-dev"
ACCURATE_NAME, FAST_NAME = "star68-accurate", "star68-fast"
SELF_TRAINING = dict(epochs=40, lr=1e-3)  # the student's fine-tuning schedule
FAST_SECOND_CYCLE = dict(epochs=40, lr=1e-3)
"""The fast model's second training cycle (warm restart from the first cycle's weights): after 36 epochs the
small network was still learning (held-out NME 7.69 % at the end of the first cycle, 6.91 % after the second)."""


def ship(data_root: Path, run_dir: Path | None = None, ann_dir: Path = Path("data"),
         out_dir: Path = MODELS_DIR, train_first: bool = True, preset: str = PRESET,
         self_training: bool = True, fast: bool = True) -> Path:
    """Build ``star68-accurate.onnx`` and (``fast``) ``star68-fast.onnx``, each with its card; with
    ``train_first=False`` export existing runs. Returns the last model's path."""
    accurate = ship_accurate(data_root, run_dir, ann_dir, out_dir, train_first, preset, self_training)
    if not fast:
        return accurate
    return ship_fast(data_root, accurate, ann_dir=ann_dir, out_dir=out_dir, train_first=train_first)


def ship_accurate(data_root: Path, run_dir: Path | None = None, ann_dir: Path = Path("data"),
                  out_dir: Path = MODELS_DIR, train_first: bool = True, preset: str = PRESET,
                  self_training: bool = True) -> Path:
    """The 2-stack teacher chain -> ``out_dir/star68-accurate.onnx`` + ``.md``."""
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
    return _export_with_card(final_dir, final_cfg, ACCURATE_NAME, out_dir / f"{ACCURATE_NAME}.onnx", val_set,
                             calibrations, calib_stats, len(train_faces), preset, self_note)


def ship_fast(data_root: Path, teacher: Path, run_dir: Path | None = None, ann_dir: Path = Path("data"),
              out_dir: Path = MODELS_DIR, train_first: bool = True, preset: str = FAST_PRESET) -> Path:
    """Distil ``teacher`` into the fast preset -> ``out_dir/star68-fast.onnx`` + ``.md``."""
    from .distill import build_distillation_set
    from .prepare import prepare_shared_wflw68
    from .trainer import train

    run_dir = run_dir or Path("runs") / preset
    wflw = data_root / "wflw"
    paths = prepare_shared_wflw68(wflw, ann_dir)
    distill_path = ann_dir / "wflw68_distill.jsonl"
    cfg = replace(PRESETS[preset], train_annotations=str(distill_path), val_annotations=str(paths["val"]),
                  image_root=str(wflw))
    if train_first:
        if not distill_path.is_file():
            counts = build_distillation_set(teacher, data_root, paths["train"], distill_path)
            print(f"distillation set: {counts}")
        train(cfg, run_dir, resume=True)
    final_dir = run_dir.with_name(run_dir.name + "-cycle2")
    final_cfg = replace(cfg, **FAST_SECOND_CYCLE, init_weights=str(run_dir / "last.pt"))
    if train_first:
        train(final_cfg, final_dir, resume=True)
    if not distill_path.is_file():
        raise FileNotFoundError(f"{distill_path} not found: run `python -m train ship` without --skip-training")
    faces = read_annotations(distill_path)
    sources: dict[str, int] = {}
    for f in faces:
        key = f.extra.get("source", "labelled")
        sources[key] = sources.get(key, 0) + 1
    train_faces = read_annotations(paths["train"])
    calibrations, calib_stats = _calibrate(train_faces, wflw)
    val_set = _val_set(paths["val"], wflw, cfg)
    teacher_val = _heldout_onnx(teacher, val_set)
    note = (f"\n\nTrained from scratch by **distillation** from `{teacher.stem}` (held-out NME "
            f"{100 * teacher_val['nme']:.2f} % with the same protocol): {len(faces)} faces, "
            + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sources.items())
            + ". True labels where they exist; elsewhere the teacher's flip-averaged landmarks from its own "
              "detector and tracker framing (confidence >= 0.7, faces >= 80 px; 300W photos of the fixed "
              "by-image held-out split left out), `train.distill`. A second cycle of "
              f"{final_cfg.epochs} epochs from those weights at Adam lr {final_cfg.lr} (same steps) follows the "
              "first.")
    return _export_with_card(final_dir, cfg, FAST_NAME, out_dir / f"{FAST_NAME}.onnx", val_set, calibrations,
                             calib_stats, len(train_faces), preset, note)


def _export_with_card(run_dir: Path, cfg, name: str, onnx_path: Path, val_set, calibrations: dict,
                      calib_stats: dict, n_train: int, preset: str, note: str) -> Path:
    """Export ``run_dir/last.pt`` to ``onnx_path``, verify it against PyTorch, write its card beside it."""
    import torch

    from export.graph_cost import conv_macs
    from export.onnx_export import export_onnx, verify_onnx

    from .evaluate import load_network

    net = load_network(run_dir / "last.pt")
    last_epoch = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)["epoch"]
    val = _heldout(net, val_set)
    meta = _meta(cfg, calibrations, val, last_epoch, name)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(net, meta, onnx_path)
    crops = np.stack([val_set[i]["image"].numpy().transpose(1, 2, 0) for i in range(8)]).astype(np.uint8)
    parity = verify_onnx(onnx_path, net, crops)  # on real held-out face crops
    if not parity.ok:
        raise RuntimeError(f"exported model disagrees with PyTorch: {parity}")
    uncertainty = _calibrate_uncertainty(onnx_path, val_set)
    latency = _cpu_latency_ms(onnx_path, cfg.network.input_size)
    card = _model_card(meta, cfg, val, calib_stats, latency, conv_macs(onnx_path), onnx_path, n_train,
                       str(parity), preset, note, uncertainty)
    onnx_path.with_suffix(".md").write_text(card)
    print(card)
    return onnx_path


def _calibrate_uncertainty(onnx_path: Path, val_set) -> dict:
    """Fit the covariance calibration on the held-out faces and store it in the exported model (as
    ``python -m train calibrate-uncertainty`` does)."""
    from .uncertainty import calibrate_model

    return calibrate_model(onnx_path, val_set.faces, val_set.root)


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


def _heldout_onnx(model: Path, val_set) -> dict:
    """Held-out metrics of an exported model on the same GT-framed crops as :func:`_heldout`."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine

    from .dataset import crop_to_frame
    from .metrics import nme_per_face, summarize

    engine = OnnxRuntimeEngine(model)
    items = [val_set[i] for i in range(len(val_set))]
    crops = np.stack([it["image"].numpy().transpose(1, 2, 0) for it in items]).astype(np.uint8)
    means = np.concatenate([engine.infer(crops[i:i + 32])[0] for i in range(0, len(crops), 32)])
    pred = crop_to_frame(means, np.stack([it["to_crop"].numpy() for it in items]), val_set.size)
    gt = np.stack([val_set.faces[int(it["index"])].landmarks for it in items])
    return summarize(nme_per_face(pred, gt, val_set.scheme, "inter_ocular"))


def _meta(cfg, calibrations: dict, val: dict, epoch: int, name: str = ACCURATE_NAME) -> ModelMeta:
    return ModelMeta(
        name=name, scheme=cfg.network.scheme, input_size=cfg.network.input_size,
        network=cfg.network.to_dict(), box_calibration=calibrations["full"], box_calibrations=calibrations,
        extra={"heldout_nme_gt_crop": round(val["nme"], 5), "heldout_faces": val["count"], "epoch": epoch,
               "license": "weights trained on WFLW (non-commercial research use only)"})


def _uncertainty_row(res: dict | None) -> str:
    if not res:
        return "none (Face.covariance is the raw STAR covariance)"
    cov = lambda d: " / ".join(f"{100 * v:.1f}" for v in d.values())  # noqa: E731
    return (f"eigenvalue map per landmark group fitted on {res['calibration']['fitted_on_faces']} held-out faces "
            f"(`star_track.uncertainty`); 1/2/3-σ coverage raw {cov(res['coverage_raw'])} %, calibrated "
            f"{cov(res['coverage_calibrated_in_sample'])} % in-sample (cross-validated: `python -m "
            "benchmarks.uncertainty`)")


def _cpu_latency_ms(onnx_path: Path, size: int, repeats: int = 100) -> float:
    """Median ms per face at batch 1 through the runtime's engine (its default threads and session options)."""
    from star_track.bench_engines import synthetic_crops
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(onnx_path, providers=["CPUExecutionProvider"])
    x = synthetic_crops(size, 1)
    for _ in range(10):
        engine.infer(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.infer(x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def _model_card(meta: ModelMeta, cfg, val: dict, calib: dict, latency: float, macs: int, path: Path,
                n_train: int, parity: str, preset: str, note: str = "", uncertainty: dict | None = None) -> str:
    from star_track.bench_engines import cpu_name
    from star_track.engines.onnxruntime_engine import default_threads

    net = cfg.network
    size_mb = path.stat().st_size / 1e6
    blocks = "inverted-residual blocks (1x1 expand, 3x3 depthwise, 1x1 project)" if net.block == "inverted" \
        else "pre-activation bottleneck blocks"
    from star_track.model_registry import DEFAULT_BUNDLED

    role = f"bundled, `--model {meta.name}`" + (" (the default)" if meta.name == DEFAULT_BUNDLED else "")
    return f"""# {meta.name} — {role}

| | |
|---|---|
| architecture | STAR stacked hourglass (ADNet attention heads), {net.num_stacks} stack{"s" if net.num_stacks > 1 else ""} x {net.channels} channels of {blocks}, hourglass depth {net.depth}, input {net.input_size}x{net.input_size} BGR, heatmaps {net.heatmap_size}x{net.heatmap_size} |
| cost | {macs / 1e6:.0f} M multiply-accumulates per face (conv + matmul, counted from the graph: `export.graph_cost.conv_macs`) |
| landmark scheme | 300W 68 points (`{meta.scheme}`) |
| outputs | landmarks (B,68,2) and STAR covariance (B,68,2,2), decoded in the graph |
| file | `{path.name}`, {size_mb:.1f} MB, opset 17; ONNX vs PyTorch on 8 held-out crops: {parity} |
| CPU latency | {latency:.2f} ms per face, ONNX Runtime, batch 1, {default_threads()} thread, measured when the card was written on the build machine: {cpu_name()}, {os.cpu_count()} cores. Compare models within one run: `python -m benchmarks.speed --peer-only` |
| held-out NME | **{100 * val['nme']:.2f} %** inter-ocular (outer eye corners), FR@10 {100 * val['fr@0.1']:.1f} %, AUC@10 {val['auc@0.1']:.3f}, on {val['count']} held-out faces, crops framed from the true landmarks (last epoch, EMA weights; end-to-end figures with the detector are in `benchmarks/README.md`) |
| uncertainty calibration | {_uncertainty_row(uncertainty)} |
| detector calibration | BlazeFace box -> crop (dx, dy, k): full {tuple(round(v, 4) for v in meta.box_calibrations['full'])} ({calib['full']['matched']}/{calib['full']['faces']} faces detected), short {tuple(round(v, 4) for v in meta.box_calibrations['short'])} ({calib['short']['matched']}/{calib['short']['faces']}) |

## Training data and terms
{n_train} labelled faces on the WFLW test photos in `shared/data/wflw` (WIDER FACE images), split **by image**
with a fixed hash (`train.prepare.is_validation_image`, 15 % of images held out; training never sees them).
Labels: official WFLW 98-point annotations reduced to 68 points where available (514 of 660 faces), otherwise
the third-party 68-point conversion. WFLW, WIDER FACE and 300W are provided by their authors for
**non-commercial research**; these weights inherit that restriction. Because the faces are WFLW *test* images,
this model has no clean WFLW benchmark number and must not be compared with published WFLW results.

## Training
`python -m train ship --data ../shared/data` (preset `{preset}`: {cfg.epochs} epochs, batch {cfg.batch_size},
Adam lr {cfg.lr}, steps at {', '.join(str(m) for m in cfg.milestones)} of the schedule, STAR loss {cfg.star_version}
+ AWing on point and edge maps, EMA, the spec's augmentation with flips).{note} CPU only.

## Limitations
Small training set: expect larger errors on extreme poses, heavy occlusion and faces unlike WIDER FACE
photos. Users with the research weights can import the official STAR checkpoints (`star-track models import`).
"""
