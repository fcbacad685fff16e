"""Engine timing: latency of each landmark engine per batch size (crops in, landmarks out).

Times ``engine.infer`` end to end (host->device copies and decoding included), after warm-up, as the median
over repeated runs. Hooked into ``star-track bench``; usable on its own::

    rows = run_engine_bench("model.onnx", ["onnxruntime", "tensorrt"], batches=(1, 4, 8), repeats=20)
    print_table(rows)
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import LandmarkEngine


def synthetic_crops(size: int, batch: int = 4, seed: int = 0) -> np.ndarray:
    """Deterministic image-like (B, S, S, 3) uint8 BGR crops: smooth blobs plus noise (not flat noise, so
    activations and heatmaps cover a realistic range)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    crops = np.empty((batch, size, size, 3), np.float64)
    for b in range(batch):
        img = np.zeros((size, size, 3))
        for _ in range(6):
            cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3)
            img += rng.uniform(40, 120, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        crops[b] = img + rng.normal(0, 8, img.shape)
    return np.clip(crops, 0, 255).astype(np.uint8)


def time_engine(engine: LandmarkEngine, batch: int, repeats: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Median / p90 latency of ``engine.infer`` on ``batch`` synthetic crops."""
    crops = synthetic_crops(engine.meta.input_size, batch)
    for _ in range(warmup):  # first calls pay for allocation, autotuning, lazy init
        engine.infer(crops)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        engine.infer(crops)
        times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    p90 = float(np.percentile(times, 90))
    return {"engine": engine.name, "model": engine.meta.name, "input": engine.meta.input_size, "batch": batch,
            "median_ms": med, "p90_ms": p90, "ms_per_face": med / batch, "faces_per_s": 1e3 * batch / med,
            "error": None}


def run_engine_bench(model: str | Path | Mapping[str, str | Path] | None,
                     engines: Sequence[str | LandmarkEngine] = ("onnxruntime", "torch", "tensorrt"),
                     batches: Sequence[int] = (1, 4, 8), repeats: int = 20, warmup: int = 3) -> list[dict]:
    """Time each engine at each batch size.

    Args:
        model: model path (or name) for engines given by name; a mapping ``{engine name: path}`` when engines
            need different files (e.g. ``.onnx`` for onnxruntime/tensorrt, ``.pt`` for torch).
        engines: engine names (loaded with :func:`star_track.engines.create_engine`) or loaded engines.
        batches: batch sizes to time.
        repeats: timed runs per batch size (the median is reported).
        warmup: untimed runs first.
    Returns:
        one row per (engine, batch): engine, model, input, batch, median_ms, p90_ms, ms_per_face, faces_per_s,
        error (a message and no timings when the engine could not be loaded or run).
    """
    rows: list[dict] = []
    for spec in engines:
        label = spec if isinstance(spec, str) else spec.name
        try:
            engine = _load(spec, model)
        except Exception as exc:  # a missing optional engine is a row in the table, not a crash
            rows.append({"engine": label, "batch": None, "error": _one_line(exc)})
            continue
        for batch in batches:
            try:
                rows.append(time_engine(engine, batch, repeats, warmup))
            except Exception as exc:
                rows.append({"engine": engine.name, "batch": batch, "error": _one_line(exc)})
    return rows


def _load(spec: str | LandmarkEngine, model: Any) -> LandmarkEngine:
    if not isinstance(spec, str):
        return spec
    from . import create_engine

    path = model.get(spec) if isinstance(model, Mapping) else model
    if isinstance(model, Mapping) and path is None:
        raise ValueError(f"no model given for engine {spec!r}")
    return create_engine(path, engine=spec)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def print_table(rows: Sequence[Mapping[str, Any]], title: str = "Landmark engines", console: Any = None) -> None:
    """Render :func:`run_engine_bench` rows as a rich table; engines that failed are listed under it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    table = Table(title=title)
    for col in ("engine", "model", "input", "batch", "median ms", "p90 ms", "ms / face", "faces / s"):
        table.add_column(col, justify="left" if col in ("engine", "model") else "right", no_wrap=True)
    for r in rows:
        if not r.get("error"):
            # escape: engine names like "torch[cpu]" would otherwise be read as rich markup and vanish
            table.add_row(escape(r["engine"]), escape(str(r.get("model", ""))), str(r.get("input", "")),
                          str(r["batch"]),
                          f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['ms_per_face']:.2f}",
                          f"{r['faces_per_s']:.1f}")
    console.print(table)
    for r in rows:
        if r.get("error"):
            batch = f" (batch {r['batch']})" if r.get("batch") else ""
            console.print(f"[yellow]{escape(str(r['engine']))}{batch}: {escape(r['error'])}[/yellow]")
