"""``python -m train``: prepare, train, evaluate (run ``python -m train --help``)."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from .prepare import PREPARERS

def _fail(message: str) -> typer.Exit:
    """Print ``python -m train: error: message`` (star-track's one error style); exit code 2."""
    from star_track.cli.exits import fail

    return fail(message, 2, prog="python -m train")


app = typer.Typer(help="Reproduce STAR training on WFLW, 300W and COFW; train compact CPU models.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def prepare(dataset: str = typer.Argument(..., help=f"one of: {', '.join(PREPARERS)}"),
            root: Path = typer.Argument(..., help="dataset root in the benchmark's own layout"),
            out: Path = typer.Option(Path("data"), help="folder for the annotation files (JSON Lines)"),
            allow_partial: bool = typer.Option(False, help="accept split sizes that differ from the paper's, "
                                               "and partial releases (300W: only some folders present)")):
    """Read a benchmark's own files and write our annotation files."""
    if dataset not in PREPARERS:
        raise typer.BadParameter(f"unknown dataset {dataset!r}; choose from {', '.join(PREPARERS)}")
    if not root.is_dir():
        raise typer.BadParameter(f"dataset root not found: {root}")
    kwargs = {} if dataset == "wflw68-dev" else {"allow_partial": allow_partial}
    try:
        written = PREPARERS[dataset](root, out, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        raise _fail(str(e)) from None
    for split, path in written.items():
        n = sum(1 for _ in open(path))
        typer.echo(f"{split}: {n} faces -> {path}")


@app.command("train")
def train_cmd(preset: str = typer.Option("compact68-dev", help="configuration preset"),
              config: Path = typer.Option(None, help="a config.json (overrides --preset)"),
              out: Path = typer.Option(Path("runs/run"), help="output folder (checkpoints, metrics.csv)"),
              image_root: Path = typer.Option(None, help="folder the annotation image paths are relative to"),
              train_annotations: Path = typer.Option(None), val_annotations: Path = typer.Option(None),
              epochs: int = typer.Option(None), batch_size: int = typer.Option(None, help="total over processes"),
              lr: float = typer.Option(None), workers: int = typer.Option(None), seed: int = typer.Option(None),
              star_version: str = typer.Option(None, help="v1 or v2"),
              init_weights: Path = typer.Option(None, help="start from this checkpoint's weights (fine-tuning)"),
              teacher: Path = typer.Option(None, help="distil this checkpoint's heatmaps (soft targets) as well; "
                                           "same landmark scheme, any input size"),
              teacher_weight: float = typer.Option(None, help="weight of the heatmap distillation term"),
              resume: bool = typer.Option(True, help="continue from OUT/last.pt when present"),
              max_steps: int = typer.Option(None, help="stop after this many steps (smoke tests)")):
    """Train a STAR model. Multi-GPU: ``torchrun --nproc_per_node K -m train train ...``."""
    from .config import PRESETS, TrainConfig
    from .trainer import train

    if config is not None:
        cfg = TrainConfig.load(config)
    elif preset in PRESETS:
        cfg = PRESETS[preset]
    else:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = cfg.with_overrides(image_root=str(image_root) if image_root else None,
                             train_annotations=str(train_annotations) if train_annotations else None,
                             val_annotations=str(val_annotations) if val_annotations else None,
                             epochs=epochs, batch_size=batch_size, lr=lr, workers=workers, seed=seed,
                             star_version=star_version, init_weights=str(init_weights) if init_weights else None,
                             teacher=str(teacher) if teacher else None, teacher_weight=teacher_weight)
    for name in ("train_annotations", "image_root", *(n for n in ("init_weights", "teacher") if getattr(cfg, n))):
        if not Path(getattr(cfg, name)).exists():
            raise _fail(f"{name} not found: {getattr(cfg, name)!r} (run `python -m train prepare` first)")
    result = train(cfg, out, resume=resume, max_steps=max_steps)
    typer.echo(f"done: {result}")


@app.command("evaluate")
def evaluate_cmd(checkpoint: Path, annotations: Path, image_root: Path,
                 norm: str = typer.Option("inter_ocular", help="inter_ocular or inter_pupil"),
                 threshold: float = typer.Option(0.1, help="FR/AUC threshold (0.1 WFLW/COFW, 0.05 common for 300W)"),
                 ced: Path = typer.Option(None, help="write a CED plot (PNG) here")):
    """NME / FR / AUC per subset, printed beside the paper's numbers."""
    from .evaluate import evaluate, load_network, print_results

    for p in (checkpoint, annotations, image_root):
        if not p.exists():
            raise _fail(f"not found: {p}")
    results = evaluate(checkpoint, annotations, image_root, norm, threshold, ced)
    print_results(results, load_network(checkpoint).config.scheme, threshold)


@app.command("pseudo-label")
def pseudo_label_cmd(images: Path = typer.Argument(..., help="folder of unlabeled photos (searched recursively)"),
                     out: Path = typer.Option(..., help="annotation file to write (.jsonl)"),
                     image_root: Path = typer.Option(..., help="the training image root; paths are written "
                                                     "relative to it"),
                     model: str = typer.Option("star68-accurate", help="teacher model (.onnx path or name)"),
                     include: Path = typer.Option(None, help="labelled annotations to copy in first"),
                     min_score: float = typer.Option(0.7, help="minimum teacher confidence"),
                     min_size: float = typer.Option(80.0, help="minimum face size (landmark box, pixels)")):
    """Label the faces in unlabeled photos with a teacher model (flip-averaged) for semi-supervised training."""
    from .annotations import read_annotations, write_annotations
    from .pseudo_label import pseudo_label

    if not images.is_dir():
        raise _fail(f"not a folder: {images}")
    faces = pseudo_label(model, images, image_root, min_score, min_size)
    labelled = read_annotations(include) if include else []
    write_annotations(labelled + faces, out)
    typer.echo(f"{len(faces)} pseudo-labelled faces (+{len(labelled)} labelled) -> {out}")


@app.command("calibrate-uncertainty")
def calibrate_uncertainty_cmd(
        model: Path = typer.Argument(..., help="exported .onnx model (rewritten in place)"),
        data: Path = typer.Option(Path("../shared/data"), help="the shared data folder (holds wflw/)"),
        annotations: Path = typer.Option(Path("data/wflw68_val.jsonl"), help="held-out faces to fit on")):
    """Fit the covariance calibration (star_track.uncertainty) on held-out faces and store it in the model."""
    from .annotations import read_annotations
    from .uncertainty import calibrate_model

    for p in (model, annotations, data / "wflw"):
        if not p.exists():
            typer.echo(f"error: not found: {p}", err=True)
            raise typer.Exit(2)
    res = calibrate_model(model, read_annotations(annotations), data / "wflw")
    typer.echo(f"{model}: {res['calibration']['fitted_on_faces']} faces; (a, b) per group "
               f"{res['calibration']['params']}")
    for key in ("coverage_raw", "coverage_calibrated_in_sample"):
        typer.echo(f"  {key}: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in res[key].items()))
    typer.echo("  (out-of-sample coverage: python -m benchmarks.uncertainty)")


@app.command("quantize")
def quantize_cmd(
        model: Path = typer.Argument(..., help="exported float .onnx model"),
        out: Path = typer.Option(None, help="where to write it (default: MODEL-int8.onnx beside it, named so)"),
        data: Path = typer.Option(Path("../shared/data"), help="the shared data folder (holds wflw/, 300w/)"),
        ann_dir: Path = typer.Option(Path("data"), help="folder of the annotation files"),
        faces: int = typer.Option(256, min=16, help="training faces whose crops calibrate the 8-bit ranges")):
    """Quantize the model's network body to INT8 for CPUs (export/quantize.py), calibrated on training-face crops,
    and compare it with the float model on held-out crops; a card beside the model is copied with the new name
    and a quantization row."""
    import json

    from export.quantize import compare, quantizable_body, quantize_body
    from star_track.engines import INT8_SUFFIX
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.model.schemes import get_scheme

    from .dataset import label_framed_crops
    from .quantize_card import heldout_nme, write_card
    from .shape_correction import correction_sets

    if not model.is_file():
        raise _fail(f"not found: {model}")
    out = out or model.with_name(f"{model.stem}{INT8_SUFFIX}.onnx")
    meta = OnnxRuntimeEngine(model).meta
    try:
        quantizable_body(model)  # before minutes of crops: an INT8 model or a foreign graph fails at once
        train_sets, heldout, _ = correction_sets(get_scheme(meta.scheme).num_points, data, ann_dir)
        scheme, size, scale = get_scheme(meta.scheme), meta.input_size, meta.crop_scale
        calib = label_framed_crops([f for s in train_sets if s.labels is None for f in s.faces], train_sets[0].root,
                                   scheme, size, faces, scale)
        held_faces, held_root = next(iter(heldout.values()))
        check = label_framed_crops(held_faces, held_root, scheme, size, 64, scale)
        typer.echo(f"{model}: calibrating on {len(calib)} training-face crops, then scoring both models on "
                   f"{sum(len(f) for f, _ in heldout.values())} held-out faces (a minute; star68-precise the longest)",
                   err=True)
        quantize_body(model, out, calib, name=out.stem)
    except (FileNotFoundError, ValueError) as e:
        raise _fail(str(e)) from None
    report = {"model": str(out), "calibration_faces": len(calib), "vs_float_on_heldout_crops": compare(out, model, check),
              "heldout": heldout_nme(out, model, heldout)}
    card = model.with_suffix(".md")
    if card.is_file():
        write_card(card, out, report)
    typer.echo(json.dumps(report, indent=1))


@app.command("redecode")
def redecode_cmd(models: list[Path] = typer.Argument(..., help="exported .onnx models (float or INT8)")):
    """Give exported models today's in-graph decoding (export/decoding.py: the heatmap moments in one matrix
    product instead of some twenty elementwise operations over the maps, ~10 % of star68-fast's CPU time). Each
    file is replaced only after the new graph reproduces its landmarks and covariances; its card's CPU latency is
    scaled by the two graphs' times in one interleaved run."""
    from .rewrite import redecode

    _rewrite_all(models, redecode)


@app.command("streamline")
def streamline_cmd(models: list[Path] = typer.Argument(..., help="exported .onnx models (INT8 ones gain)")):
    """Exact clean-ups ONNX Runtime does not make (export/streamline.py): sibling 1x1 heads merged into one
    convolution, the CoordConv batch size read from the input, constant coordinate maps quantized once (~5 % of
    an INT8 model's CPU time). Each file is replaced only after the new graph reproduces its landmarks and
    covariances; its card's CPU latency is scaled by the two graphs' times in one interleaved run."""
    from .rewrite import streamline

    _rewrite_all(models, streamline)


def _rewrite_all(models: list[Path], rewrite) -> None:
    import json

    for model in models:
        if not model.is_file():
            raise _fail(f"not found: {model}")
    for model in models:
        try:
            report = rewrite(model)
        except ValueError as e:
            raise _fail(str(e)) from None
        typer.echo(json.dumps(report))


@app.command("pack")
def pack_cmd(annotations: list[Path] = typer.Argument(..., help="annotation files (.jsonl) to pack"),
             image_root: Path = typer.Option(..., help="folder their image paths are relative to"),
             out: Path = typer.Option(Path("runs") / "pack", help="the pack's folder (runs/ is not committed)"),
             side: int = typer.Option(256, min=32, help="patch side in pixels: twice the largest input size to "
                                      "train"),
             quality: int = typer.Option(0, min=0, max=101, help="WebP quality (0: train.pack.PACK_QUALITY; "
                                         "101: lossless)")):
    """Pack the faces of annotation files for a machine without the photos (a GPU machine gets the working tree
    and 64 MiB with it): each face's training patch as one WebP, the annotations in its pixels
    (``OUT/<stem>.jsonl``). Train from it with ``--image-root OUT --train-annotations OUT/<stem>.jsonl``."""
    from .pack import PACK_QUALITY, pack_files

    for ann in annotations:
        if not ann.is_file():
            raise _fail(f"not found: {ann}")
    stems = [ann.stem for ann in annotations]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:  # each file is packed as OUT/<stem>: the later one would overwrite the earlier
        raise _fail(f"annotation files with the same stem: {', '.join(twice)} (each is packed as OUT/<stem>)")
    if not image_root.is_dir():
        raise _fail(f"image root not found: {image_root}")
    try:
        done = pack_files(annotations, image_root, out, side, quality or PACK_QUALITY)
    except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
        raise _fail(f"{e.filename}: {e.strerror}" if getattr(e, "filename", None) and getattr(e, "strerror", None)
                    else str(e)) from None
    for name, (faces, size) in done.items():
        typer.echo(f"{name}: {faces} faces, {size / 2**20:.1f} MiB -> {out / name}.jsonl")


@app.command("shape-correction")
def shape_correction_cmd(
        model: Path = typer.Argument(..., help="exported .onnx model without a shape correction"),
        out: Path = typer.Option(None, help="where to write the corrected model (default: in place)"),
        data: Path = typer.Option(Path("../shared/data"), help="the shared data folder (holds wflw/, 300w/)"),
        ann_dir: Path = typer.Option(Path("data"), help="folder of the annotation files")):
    """Fit the model's shape correction on the labelled training faces, append it to the graph (checked), refit
    the uncertainty calibration on the held-out faces, report the held-out NME before and after, and rewrite the
    two rows of the model's card (its .md beside it) that change."""
    import json

    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.model.schemes import get_scheme

    from .shape_correction import correct_model, correction_sets, update_card
    from .uncertainty import calibrate_model

    if not model.is_file():
        raise _fail(f"not found: {model}")
    try:
        train_sets, heldout, calib_faces = correction_sets(
            get_scheme(OnnxRuntimeEngine(model).meta.scheme).num_points, data, ann_dir)
        typer.echo(f"{model}: predicting {sum(len(s.faces) for s in train_sets)} training faces, fitting, then "
                   f"{sum(len(f) for f, _ in heldout.values())} held-out faces twice and the uncertainty calibration "
                   "(minutes on a CPU; star68-precise the longest)", err=True)
        report = correct_model(model, train_sets, out or model, heldout)
    except (FileNotFoundError, ValueError) as e:
        raise _fail(str(e)) from None
    calib = calibrate_model(out or model, calib_faces, data / "wflw")
    card = (out or model).with_suffix(".md")
    if card.is_file():
        update_card(card, report, calib)
    report["uncertainty"] = {k: calib[k] for k in ("coverage_raw", "coverage_calibrated_in_sample")}
    typer.echo(json.dumps(report, indent=1))


@app.command()
def ship(data: Path = typer.Option(Path("../shared/data"), help="the shared data folder (holds wflw/, 300w/)"),
         skip_training: bool = typer.Option(False, help="export the runs as they are"),
         fast_only: bool = typer.Option(False, help="only the fast model's 300W stage, distilled from the "
                                        "bundled star68-accurate.onnx and star68-precise.onnx"),
         fast_all_labelled: bool = typer.Option(False, help="only the fast model's refresh on every labelled face "
                                                "(train.ship.ship_fast_all_labelled), exported to --out"),
         fast98: bool = typer.Option(False, help="only the 98-point model star98-fast (train.ship98), started "
                                     "from the bundled star68-fast.onnx, exported to --out"),
         fast98_300w: bool = typer.Option(False, help="the 98-point model's second cycle with the 300W faces "
                                          "added (train.ship98.ship_fast98_300w), exported to --out/fast98-300w"),
         out: Path = typer.Option(Path("runs") / "candidates", help="--fast-all-labelled, --fast98: where the "
                                  "model and its card go (not the bundled folder: a candidate is evaluated first)"),
         input_size: int = typer.Option(0, help="--fast-all-labelled: train at this input size instead of the "
                                        "model's (a cheaper-engine candidate; 0: the model's)"),
         epochs: int = typer.Option(0, help="--fast-all-labelled: epochs (0: the preset's)"),
         teacher_weight: float = typer.Option(-1.0, help="--fast-all-labelled: heatmap teacher weight (0: labels "
                                              "only; -1: the preset's)"),
         threads: int = typer.Option(0, help="CPU threads for torch and OpenCV (0: their defaults); 1 also loads "
                                     "the data in the training process (no worker)")):
    """Regenerate the bundled models from the data (both stages, see train/ship.py): star68-accurate.onnx, then
    star68-fast.onnx distilled from it, each with its .md card. Stages whose output exists are skipped and
    training runs resume, so an interrupted build continues with the same command."""
    from star_track.errors import StarTrackError
    from star_track.model import BUNDLED_DIR

    from .ship import ACCURATE_NAME, FAST_NAME, PRECISE_NAME, STAGE_DIR, ship_fast_all_labelled, ship_fast_combined
    from .ship import ship as build

    for folder in ("wflw", "300w"):
        if not (data / folder).is_dir():
            raise _fail(f"{data / folder} not found (pass --data pointing at shared/data)")
    if threads > 0:
        _limit_threads(threads)
    workers = 0 if threads == 1 else None  # 0: augment in the training process (a one-thread run)
    try:
        if fast98 or fast98_300w:
            from .ship98 import FAST98_NAME, ship_fast98, ship_fast98_300w

            if fast98_300w:
                ship_fast98_300w(data, first_model=out / f"{FAST98_NAME}.onnx", out_dir=out / "fast98-300w",
                                 train_first=not skip_training, workers=workers)
            else:
                ship_fast98(data, out_dir=out, train_first=not skip_training, workers=workers)
        elif fast_all_labelled:
            changes = {k: v for k, v in (("input_size", input_size), ("epochs", epochs)) if v > 0}
            if teacher_weight >= 0:
                changes["teacher_weight"] = teacher_weight
            run_dir = Path("runs") / ("fast68-all-labelled" + "".join(f"-{k}{v:g}" for k, v in changes.items()))
            ship_fast_all_labelled(data, run_dir=run_dir, out_dir=out, train_first=not skip_training,
                                   workers=workers, **changes)
        elif fast_only:
            ship_fast_combined(data, BUNDLED_DIR / f"{ACCURATE_NAME}.onnx", STAGE_DIR / f"{FAST_NAME}.onnx",
                               BUNDLED_DIR / f"{PRECISE_NAME}.onnx", train_first=not skip_training)
        else:
            build(data, train_first=not skip_training)
    except (StarTrackError, FileNotFoundError) as e:  # e.g. --skip-training with no run to export
        raise _fail(str(e)) from None


def _limit_threads(n: int) -> None:
    """At most ``n`` compute threads in this process (torch intra- and inter-op, OpenCV): a long training run
    beside other work on a small machine."""
    import cv2
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set, or parallel work has started
        pass
    cv2.setNumThreads(n)


def main() -> None:
    from star_track.cli.exits import run_app

    try:
        code = run_app(app, "python -m train")  # a usage error: one line, exit 2
    except KeyboardInterrupt:  # before the command runs
        code = 130
    if code == 130:  # typer turns a Ctrl-C in the command into exit code 130 without a word
        typer.echo("interrupted; resume with the same command (checkpoints are written every epoch)", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
