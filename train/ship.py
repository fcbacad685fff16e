"""Build the bundled default model from ``shared/data``: prepare -> train -> calibrate -> export -> model card.

One command regenerates ``star_track/models/default.onnx`` and ``default.md``::

    python -m train ship --data ../shared/data

Every step is resumable (training continues from ``runs/<preset>/last.pt``). The shipped weights are the
EMA weights of the LAST epoch, so the held-out NME on the card is not selected on the held-out faces.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from star_track.model_meta import ModelMeta

from .annotations import read_annotations
from .config import PRESETS

MODELS_DIR = Path(__file__).resolve().parents[1] / "star_track" / "models"
PRESET = "compact68x2-dev"


def ship(data_root: Path, run_dir: Path | None = None, ann_dir: Path = Path("data"),
         out_dir: Path = MODELS_DIR, train_first: bool = True, preset: str = PRESET) -> Path:
    import torch

    from export.onnx_export import export_onnx, verify_onnx

    from .calibrate import fit_box_calibration
    from .evaluate import load_network
    from .metrics import summarize
    from .prepare import prepare_shared_wflw68
    from .trainer import evaluate_model, train

    run_dir = run_dir or Path("runs") / preset
    wflw = data_root / "wflw"
    paths = prepare_shared_wflw68(wflw, ann_dir)
    cfg = replace(PRESETS[preset], train_annotations=str(paths["train"]), val_annotations=str(paths["val"]),
                  image_root=str(wflw))
    if train_first:
        train(cfg, run_dir, resume=True)
    net = load_network(run_dir / "last.pt")
    last_epoch = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)["epoch"]

    from star_track.schemes import get_scheme

    from .dataset import FaceCropDataset

    val_faces = read_annotations(paths["val"])
    val_set = FaceCropDataset(val_faces, wflw, get_scheme(cfg.network.scheme), cfg.network.input_size, None,
                              with_targets=False)
    val = summarize(evaluate_model(net, val_set, torch.device("cpu"), "inter_ocular"))

    train_faces = read_annotations(paths["train"])
    calibrations, calib_stats = {}, {}
    for det in ("full", "short"):
        calibrations[det], calib_stats[det] = fit_box_calibration(train_faces, wflw, det)

    meta = ModelMeta(
        name="star68-compact", scheme=cfg.network.scheme, input_size=cfg.network.input_size,
        network=cfg.network.to_dict(), box_calibration=calibrations["full"], box_calibrations=calibrations,
        extra={"heldout_nme_gt_crop": round(val["nme"], 5), "heldout_faces": val["count"], "epoch": last_epoch,
               "license": "weights trained on WFLW (non-commercial research use only)"})
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(net, meta, out_dir / "default.onnx")
    crops = np.stack([val_set[i]["image"].numpy().transpose(1, 2, 0) for i in range(8)]).astype(np.uint8)
    parity = verify_onnx(onnx_path, net, crops)  # on real held-out face crops
    if not parity.ok:
        raise RuntimeError(f"exported model disagrees with PyTorch: {parity}")
    latency = _cpu_latency_ms(onnx_path, cfg.network.input_size)
    card = _model_card(meta, cfg, val, calib_stats, latency, onnx_path, len(train_faces), str(parity), preset)
    (out_dir / "default.md").write_text(card)
    print(card)
    return onnx_path


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
                parity: str, preset: str) -> str:
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
+ AWing on point and edge maps, EMA, the spec's augmentation with flips). CPU only.

## Limitations
Small training set (about {n_train} faces): expect larger errors on extreme poses, heavy occlusion and
faces unlike WIDER FACE photos. Users with the research weights can import the official STAR checkpoints
(`star-track models import`).
"""
