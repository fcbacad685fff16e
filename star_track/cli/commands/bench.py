"""``star-track bench engines``: time the available landmark engines (the full suite: ``python -m benchmarks``)."""
from __future__ import annotations

from typing import Optional

import typer

from ..exits import error_boundary, fail
from ..options import OPTIONS


def bench_engines(
    model: Optional[str] = OPTIONS["model"][1],
    engines: str = typer.Option("onnxruntime,torch,tensorrt", "--engines", help="comma-separated engine names"),
    batches: str = typer.Option("1,4,8", "--batches", help="comma-separated batch sizes"),
    repeats: int = typer.Option(20, "--repeats", min=1, help="timed runs per batch size (median reported)"),
) -> None:
    """Time each available landmark engine at batch 1/4/8 (unavailable engines are listed, not fatal)."""
    from ...engines.timing import print_table, run_engine_bench

    with error_boundary(model or "default model"):
        try:
            sizes = [int(b) for b in batches.split(",") if b.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise fail(f"--batches must be comma-separated integers >= 1, got {batches!r}", 2)
        rows = run_engine_bench(model, [e.strip() for e in engines.split(",") if e.strip()], sizes, repeats)
        print_table(rows)
