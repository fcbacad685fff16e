"""Cost of candidate STAR architectures on this CPU, beside the MediaPipe Face Mesh peer model, in one run.

For each candidate network (random weights: this measures cost, not accuracy) the script exports the ONNX graph
the runtime would load, counts its convolution and matrix-multiply MACs per face from the graph, and times it
with ONNX Runtime at batch 1 with the runtime's own session options. The peer model (LiteRT/XNNPACK, the model
behind MediaPipe's face mesh) is timed in the same process on the same number of threads.

    python -m benchmarks.architectures [--threads 2] [--repeats 100]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from export.graph_cost import conv_macs

from .common import cpu_name, make_console, markdown_table, print_table
from .peer import PEER_MODEL, PeerFaceMesh

# (label, NetworkConfig keyword arguments); the bundled models first, then the fast candidates.
CANDIDATES = [
    ("bottleneck 2x128 (accurate model)", dict(num_stacks=2, channels=128, block="bottleneck")),
    ("inverted 1x64", dict(num_stacks=1, channels=64, block="inverted")),
    ("inverted 1x64, inner expansion 4 (fast model)", dict(num_stacks=1, channels=64, block="inverted", inner_expand=4)),
    ("inverted 1x64, expansion 3", dict(num_stacks=1, channels=64, block="inverted", expand=3)),
    ("inverted 2x48", dict(num_stacks=2, channels=48, block="inverted")),
    ("inverted 2x64", dict(num_stacks=2, channels=64, block="inverted")),
    ("inverted 1x96", dict(num_stacks=1, channels=96, block="inverted")),
    ("inverted 2x96", dict(num_stacks=2, channels=96, block="inverted")),
    # Issue 26's search for a cheaper engine: fewer levels at 4x4 / 8x8 (depth 2), narrower, smaller input.
    ("inverted 1x64, inner expansion 4, hourglass depth 2", dict(num_stacks=1, channels=64, block="inverted",
                                                                 inner_expand=4, depth=2)),
    ("inverted 1x96, hourglass depth 2", dict(num_stacks=1, channels=96, block="inverted", depth=2)),
    ("inverted 1x48, inner expansion 4", dict(num_stacks=1, channels=48, block="inverted", inner_expand=4)),
    ("inverted 1x64, inner expansion 4, 96 px input", dict(num_stacks=1, channels=64, block="inverted",
                                                           inner_expand=4, input_size=96)),
]


def time_onnx(path: Path, size: int, threads: int, repeats: int) -> float:
    """Median ms per call at batch 1 with the runtime's session options."""
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(path, providers=["CPUExecutionProvider"], threads=threads)
    crops = np.random.default_rng(0).integers(0, 255, (1, size, size, 3), dtype=np.uint8)
    return _median_ms(lambda: engine.infer(crops), repeats)


def _median_ms(fn, repeats: int) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    from star_track.nn.onnx_export import export_onnx
    from star_track.nn.checkpoint import meta_for
    from star_track.nn.network import NetworkConfig, StarNet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--input-size", type=int, default=128)
    args = ap.parse_args(argv)
    console = make_console()

    peer = PeerFaceMesh(PEER_MODEL, threads=args.threads)
    face = np.random.default_rng(1).integers(0, 255, (peer.size, peer.size, 3), dtype=np.uint8)
    peer_ms = _median_ms(lambda: peer.run(face), args.repeats)
    rows = [["MediaPipe Face Mesh (LiteRT, 192 px)", "-", f"{peer_ms:.2f}", "1.00"]]
    with tempfile.TemporaryDirectory() as tmp:
        for label, kw in CANDIDATES:
            cfg = NetworkConfig("300w68", **{"depth": 3, "input_size": args.input_size, **kw})
            path = export_onnx(StarNet(cfg).eval(), meta_for(cfg, label), Path(tmp) / "m.onnx")
            macs = conv_macs(path)
            ms = time_onnx(path, cfg.input_size, args.threads, args.repeats)
            rows.append([label, f"{macs / 1e6:.0f}", f"{ms:.2f}", f"{ms / peer_ms:.2f}"])
            console.print(f"{label}: {macs / 1e6:.0f} MMAC, {ms:.2f} ms")
    headers = ["network", "MMAC / face", "ms / face (b1)", "x peer"]
    print_table(f"architectures on this CPU ({cpu_name()}), {args.threads} threads", headers, rows, console)
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
