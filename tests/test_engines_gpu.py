"""Torch and TensorRT engines, the engine cache and the FP16 ONNX conversion.

The pure-python parts (cache keys, version rules, FP16 graph conversion, CPU torch engine, benchmark) run
everywhere; tests marked ``gpu`` need CUDA (and TensorRT where they say so) and skip elsewhere.
"""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _export_helpers import peaky_model, peaky_onnx_plain  # noqa: E402

from star_track.bench_engines import print_table, run_engine_bench, synthetic_crops  # noqa: E402
from star_track.engines.base import LandmarkEngine, to_nchw_float  # noqa: E402
from star_track.engines.onnx_fp16 import BOUNDARY_TENSOR, convert_onnx_fp16  # noqa: E402
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from star_track.engines.tensorrt_engine import (EngineSpec, EngineUnavailable, engine_cache_dir,  # noqa: E402
                                                make_spec, trt_major, uses_fp16_builder_flag)
from star_track.engines.torch_engine import TorchEngine  # noqa: E402

SPEC = EngineSpec(onnx_sha256="ab" * 32, trt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                  compute_capability="9.0", precision="fp16", min_batch=1, opt_batch=8, max_batch=8)


# --- version rules and engine cache keys (pure python) ---

@pytest.mark.parametrize(("version", "flag"), [("10.0.1", True), ("10.13.0.35", True), ("11.0.0", False),
                                               ("11.4.1.2", False)])
def test_fp16_strategy_follows_tensorrt_major(version, flag):
    assert uses_fp16_builder_flag(version) is flag


def test_tensorrt_9_is_refused_with_a_hint():
    assert trt_major("9.3.0") == 9
    with pytest.raises(EngineUnavailable, match=r"star-track\[gpu\]"):
        uses_fp16_builder_flag("9.3.0")


def test_cache_key_changes_with_every_field():
    keys = {SPEC.key()}
    for change in (dict(onnx_sha256="cd" * 32), dict(trt_version="11.0.0"), dict(gpu_name="RTX 4090"),
                   dict(compute_capability="8.9"), dict(precision="fp32"), dict(opt_batch=4), dict(max_batch=16)):
        keys.add(replace(SPEC, **change).key())
    assert len(keys) == 8
    assert SPEC.key() == replace(SPEC).key()  # deterministic
    name = SPEC.filename("default")
    assert name.startswith("default.fp16.b8.") and name.endswith(".engine")


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path))
    assert engine_cache_dir() == tmp_path / "engines"
    monkeypatch.delenv("STAR_TRACK_CACHE")
    assert engine_cache_dir().parts[-3:] == (".cache", "star-track", "engines")


def test_spec_hashes_the_onnx_bytes(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"model one")
    b.write_bytes(b"model two")
    sa = make_spec(a, "10.13", "gpu", "8.6", max_batch=4)
    sb = make_spec(b, "10.13", "gpu", "8.6", max_batch=4)
    assert sa.onnx_sha256 != sb.onnx_sha256 and sa.key() != sb.key()
    assert (sa.min_batch, sa.opt_batch, sa.max_batch) == (1, 4, 4)


def test_tensorrt_engine_without_tensorrt_gives_install_hint():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from star_track.engines import create_engine
    from star_track.engines.tensorrt_engine import TensorRTEngine

    with pytest.raises(EngineUnavailable, match=r'pip install "star-track\[gpu\]"'):
        TensorRTEngine(peaky_onnx_plain())
    with pytest.raises(EngineUnavailable, match=r"star-track\[gpu\]"):
        create_engine(peaky_onnx_plain(), engine="tensorrt")


# --- FP16 ONNX for strongly typed TensorRT (TensorRT 11) ---

def test_fp16_conversion_keeps_io_and_decoding_fp32():
    src = onnx.load(str(peaky_onnx_plain()))
    model = convert_onnx_fp16(src)
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [(v.name, v.type.tensor_type.elem_type) for v in model.graph.input] == [("images", f32)]
    assert {v.type.tensor_type.elem_type for v in model.graph.output} == {f32}
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.output[0]] == f16 for n in convs)
    for n in model.graph.node:
        if n.op_type == "InstanceNormalization":  # variance over the heatmap stays FP32
            assert types[n.output[0]] == f32
        if n.op_type == "ReduceSum":  # the decoding after the heatmaps stays FP32
            assert types[n.output[0]] == f32
    assert any(n.op_type == "Cast" and BOUNDARY_TENSOR in n.input[0] for n in model.graph.node)


def test_fp16_onnx_runs_close_to_fp32():
    path = peaky_onnx_plain()
    crops = synthetic_crops(128, 3, seed=7)
    x = to_nchw_float(crops)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    half = convert_onnx_fp16(onnx.load(str(path))).SerializeToString()
    try:
        got = ort.InferenceSession(half, providers=["CPUExecutionProvider"]).run(None, {"images": x})
    except Exception as exc:  # CPU builds without FP16 kernels: the graph checks above still hold
        pytest.skip(f"ONNX Runtime CPU cannot run FP16 here: {str(exc)[:100]}")
    err = np.abs(got[0] - ref[0]).max(axis=-1)
    # FP16 rounding (~1e-3 relative) moves broad, multi-modal test heatmaps' soft-argmax the most.
    assert np.isfinite(got[0]).all() and np.percentile(err, 90) < 2e-3 and err.max() < 2e-2


def test_fp16_conversion_needs_the_named_heatmap_tensor():
    from star_track.engines.base import ModelError

    with pytest.raises(ModelError, match="re-export"):
        convert_onnx_fp16(onnx.load(str(peaky_onnx_plain())), boundary="no_such_tensor")


# --- torch engine (CPU here) and the benchmark ---

def test_torch_engine_cpu_matches_onnxruntime():
    _, ckpt, _ = peaky_model()
    eng = TorchEngine(ckpt, device="cpu")
    assert isinstance(eng, LandmarkEngine) and eng.name == "torch[cpu]" and not eng.fp16
    ref = OnnxRuntimeEngine(peaky_onnx_plain(), providers=["CPUExecutionProvider"])
    crops = synthetic_crops(128, 2, seed=4)
    (m1, c1), (m2, c2) = eng.infer(crops), ref.infer(crops)
    assert m1.shape == (2, 68, 2) and c1.shape == (2, 68, 2, 2) and m1.dtype == np.float32
    assert np.abs(m1 - m2).max() < 1e-3  # see test_export: broad maps amplify float32 reordering noise
    assert np.abs(c1 - c2).max() < 1e-3 * max(1.0, float(np.abs(c2).max()))


def test_torch_engine_rejects_onnx():
    from star_track.engines.base import ModelError

    with pytest.raises(ModelError, match="torch engine loads"):
        TorchEngine(peaky_onnx_plain())


def test_engine_bench_rows_and_table():
    _, ckpt, _ = peaky_model()
    engines = [OnnxRuntimeEngine(peaky_onnx_plain(), providers=["CPUExecutionProvider"]), "no-such-engine"]
    rows = run_engine_bench(peaky_onnx_plain(), engines, batches=(1, 2), repeats=2, warmup=1)
    ok = [r for r in rows if not r["error"]]
    assert [r["batch"] for r in ok] == [1, 2]
    assert all(r["median_ms"] > 0 and r["faces_per_s"] > 0 for r in ok)
    assert rows[-1]["engine"] == "no-such-engine" and "unknown engine" in rows[-1]["error"]
    from rich.console import Console

    buf = io.StringIO()
    print_table(rows, console=Console(file=buf, width=150))
    assert "onnxruntime[CPUExecutionProvider]" in buf.getvalue() and "no-such-engine" in buf.getvalue()


# --- GPU (skipped without CUDA) ---

@pytest.mark.gpu
def test_torch_engine_cuda_fp16_matches_cpu():
    _, ckpt, _ = peaky_model()
    gpu, cpu = TorchEngine(ckpt), TorchEngine(ckpt, device="cpu")
    assert gpu.fp16 and gpu.name == "torch[cuda-fp16]"
    crops = synthetic_crops(128, 4, seed=2)
    assert np.abs(gpu.infer(crops)[0] - cpu.infer(crops)[0]).max() < 5e-3


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt")
    from export.tensorrt_step import verify_tensorrt

    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path))
    parity = verify_tensorrt(peaky_onnx_plain(), max_batch=4)
    assert parity.ok, str(parity)


@pytest.mark.gpu
def test_tensorrt_cache_hit_and_rebuild_of_a_foreign_engine(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt")
    from star_track.engines.tensorrt_engine import TensorRTEngine, build_engine

    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path))
    logs: list[str] = []
    path = build_engine(peaky_onnx_plain(), max_batch=2, log=logs.append)
    assert len(logs) == 2 and path.parent == tmp_path / "engines"
    assert build_engine(peaky_onnx_plain(), max_batch=2, log=logs.append) == path and len(logs) == 2
    path.write_bytes(b"an engine from another GPU / TensorRT version")
    eng = TensorRTEngine(peaky_onnx_plain(), max_batch=2, log=logs.append)
    assert any("rebuilding" in line for line in logs)
    mean, cov = eng.infer(synthetic_crops(128, 5))  # 5 > max_batch: runs in chunks
    assert mean.shape == (5, 68, 2) and cov.shape == (5, 68, 2, 2)


def test_torch_engine_empty_batch():
    _, ckpt, _ = peaky_model()
    mean, cov = TorchEngine(ckpt, device="cpu").infer(np.zeros((0, 128, 128, 3), np.uint8))
    assert mean.shape == (0, 68, 2) and cov.shape == (0, 68, 2, 2)


def test_bench_table_keeps_bracketed_engine_names():
    from rich.console import Console

    row = {"engine": "torch[cpu]", "model": "m", "input": 128, "batch": 1, "median_ms": 2.0, "p90_ms": 3.0,
           "ms_per_face": 2.0, "faces_per_s": 500.0, "error": None}
    buf = io.StringIO()
    print_table([row, {"engine": "tensorrt", "batch": None, "error": 'pip install "star-track[gpu]"'}],
                console=Console(file=buf, width=150))
    assert "torch[cpu]" in buf.getvalue() and "star-track[gpu]" in buf.getvalue()
