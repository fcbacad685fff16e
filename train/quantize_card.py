"""``python -m train quantize``'s helpers: both models' held-out NME, and the INT8 model's card
(the float model's card with the new name, its CPU latency measured beside the float model, a quantization row)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np


def heldout_nme(quantized: Path, src: Path, heldout: dict[str, tuple[list, Path]]) -> dict[str, dict]:
    """Mean NME of both models on each held-out set, crops framed from the labels (the cards' protocol)."""
    from .combined import heldout_nme as per_face

    return {name: {"faces": len(nme[0]), "nme_float": float(nme[0].mean()), "nme_int8": float(nme[1].mean())}
            for name, nme in per_face([src, quantized], heldout).items()}


def latency_ratio(model: Path, reference: Path, rounds: int = 15) -> tuple[float, float]:
    """Median ms per face (batch 1, 1 thread) of ``model`` and ``reference`` (same input size), calls
    interleaved."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.engines.timing import synthetic_crops

    engines = [OnnxRuntimeEngine(model, threads=1), OnnxRuntimeEngine(reference, threads=1)]
    x = synthetic_crops(engines[0].meta.input_size, batch=1)
    calls = max(3, int(round(40 * (128 / engines[0].meta.input_size) ** 2)))
    times: list[list[float]] = [[], []]
    for e in engines:
        e.infer(x)
    for _ in range(rounds):
        for k, e in enumerate(engines):
            t0 = time.perf_counter()
            for _ in range(calls):
                e.infer(x)
            times[k].append((time.perf_counter() - t0) / calls * 1e3)
    q_ms, f_ms = (float(np.median(t)) for t in times)
    return q_ms, f_ms


def write_card(float_card: Path, quantized: Path, report: dict) -> Path:
    """The quantized model's card beside it, from the float model's; returns its path."""
    src = float_card.with_suffix(".onnx")
    text = float_card.read_text()
    old, new = float_card.stem, quantized.stem
    base = float(re.search(r"\| CPU latency \| ([\d.]+) ms per face", text).group(1))  # type: ignore[union-attr]
    q_ms, f_ms = latency_ratio(quantized, src)
    lines = text.splitlines()
    lines[0] = f"# {new} — bundled, `--model {new}` (INT8 body of `{old}`)"
    cmp = report["vs_float_on_heldout_crops"]
    held = "; ".join(f"{k} ({v['faces']} faces) {100 * v['nme_float']:.2f} -> {100 * v['nme_int8']:.2f} %"
                     for k, v in report["heldout"].items())
    for i, line in enumerate(lines):
        if line.startswith("| file |"):
            lines[i] = (f"| file | `{quantized.name}`, {quantized.stat().st_size / 1e6:.1f} MB, `{old}.onnx` with its network body "
                        "in INT8 (`python -m train quantize`) |")
        elif line.startswith("| CPU latency |"):
            lines[i] = (f"| CPU latency | {base * q_ms / f_ms:.2f} ms per face, ONNX Runtime, batch 1, 1 thread, on the "
                        f"scale of `{old}`'s card ({base:.2f} ms): {q_ms / f_ms:.2f}x its time in one interleaved run "
                        f"({q_ms:.2f} vs {f_ms:.2f} ms). Compare models within one run: `python -m benchmarks.speed "
                        "--peer-only` |")
            lines.insert(i + 1, f"| quantization | network body (stem, hourglass, feature blocks) in INT8: unsigned "
                                f"activations, per-channel weights, ranges from {report['calibration_faces']} training-"
                                "face crops (ONNX Runtime static quantization, QDQ); heatmap heads, decoding, shape "
                                "correction and covariances in float (`export/quantize.py`). Against the float model "
                                f"on held-out crops: landmarks {cmp['mean_px']:.3f} px mean, {cmp['max_px']:.2f} px "
                                f"largest (crop pixels), covariances within {100 * cmp['max_cov_rel']:.1f} %; held-out NME "
                                f"float -> INT8, crops framed from the labels: {held}. The other rows are the float "
                                f"model's. For CPUs; a GPU runs `{old}` |")
    out = quantized.with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    return out
