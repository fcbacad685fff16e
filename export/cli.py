"""``python -m export``: checkpoint -> ONNX (decoding in the graph) -> optional TensorRT engine, each verified."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from star_track.errors import TRAIN_HINT

app = typer.Typer(add_completion=False, help=__doc__)
console = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``python -m export: error: message`` (star-track's one error style) and return the Exit to raise."""
    from star_track.cli.exits import fail

    return fail(message, code, prog="python -m export")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="our trainer's .pt or an official STAR .pkl")],
    output: Annotated[Optional[Path], typer.Argument(help="ONNX file to write (default: CHECKPOINT.onnx)")] = None,
    name: Annotated[Optional[str], typer.Option(help="model name stored in the metadata")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="input size of an official .pkl (default 256)")] = None,
    ema: Annotated[bool, typer.Option(help="use EMA weights when the checkpoint has them")] = True,
    heatmaps: Annotated[bool, typer.Option(help="also output the fused heatmaps (B, N, H, W)")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 17,
    tolerance: Annotated[float, typer.Option(help="max landmark |ONNX - PyTorch| in [-1, 1] crop units")] = 1e-4,
    tensorrt: Annotated[bool, typer.Option("--tensorrt", help="also build and verify a TensorRT engine")] = False,
    max_batch: Annotated[int, typer.Option(help="TensorRT profile: batch 1..MAX_BATCH")] = 8,
    precision: Annotated[str, typer.Option(help="TensorRT precision: fp16 or fp32")] = "fp16",
) -> None:
    """Export CHECKPOINT to ONNX, check it (onnx.checker + parity with PyTorch), optionally build TensorRT."""
    # One unwrapped line (a usage error's rich box would wrap long paths at the terminal width).
    if not checkpoint.is_file():
        raise _fail(f"{checkpoint}: does not exist" if not checkpoint.exists() else f"{checkpoint}: not a file")
    if precision not in ("fp16", "fp32"):
        raise _fail(f"--precision must be fp16 or fp32, got {precision!r}", 2)
    if tensorrt:
        _check_gpu_dependencies()
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise _fail(f"export needs torch and onnx ({exc.name} is missing): {TRAIN_HINT}") from None
    from dataclasses import replace

    from star_track.nn.checkpoint import load_checkpoint
    from star_track.errors import StarTrackError
    from star_track.nn.network import count_parameters

    from star_track.nn.onnx_export import export_onnx, verify_onnx

    try:
        net, meta = load_checkpoint(checkpoint, prefer_ema=ema, input_size=input_size)
    except StarTrackError as exc:
        raise _fail(str(exc)) from None
    if name:
        meta = replace(meta, name=name)
    output = output or checkpoint.with_suffix(".onnx")
    cfg = net.config
    console.print(f"checkpoint {checkpoint.name}: {cfg.scheme}, {cfg.num_stacks} stacks x {cfg.channels} ch, "
                  f"depth {cfg.depth}, input {cfg.input_size}, {count_parameters(net) / 1e6:.2f}M parameters")
    t0 = time.perf_counter()
    export_onnx(net, meta, output, opset=opset, with_heatmaps=heatmaps)
    console.print(f"ONNX written in {time.perf_counter() - t0:.1f} s: {output} (opset {opset}, dynamic batch, "
                  "onnx.checker ok)")
    parity = verify_onnx(output, net, tolerance=tolerance)
    console.print(f"ONNX Runtime vs PyTorch: {parity}")
    if not parity.ok:
        raise typer.Exit(1)
    if tensorrt:
        from .tensorrt_step import verify_tensorrt

        trt_parity = verify_tensorrt(output, max_batch=max_batch, precision=precision)
        console.print(f"TensorRT {precision} vs ONNX Runtime: {trt_parity}")
        if not trt_parity.ok:
            raise typer.Exit(1)


def _check_gpu_dependencies() -> None:
    """Fail early, with the install hint, before spending time on the ONNX export."""
    from star_track.engines.tensorrt_engine import require_cuda_torch, require_tensorrt
    from star_track.errors import EngineUnavailable

    try:
        require_tensorrt()
        require_cuda_torch()
    except EngineUnavailable as exc:
        raise _fail(str(exc)) from None


def main() -> None:
    """Console entry point: a usage error is one line, exit code 2 (:func:`star_track.cli.exits.run_app`)."""
    import sys

    from star_track.cli.exits import run_app

    sys.exit(run_app(app, "python -m export"))
