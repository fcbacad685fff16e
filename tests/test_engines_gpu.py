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

from star_track.engines.timing import print_table, run_engine_bench, synthetic_crops  # noqa: E402
from star_track.engines.base import LandmarkEngine, to_nchw_float  # noqa: E402
from star_track.engines.onnx_fp16 import BOUNDARY_TENSOR, convert_onnx_fp16  # noqa: E402
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from star_track.engines.tensorrt_engine import (EngineSpec, EngineUnavailable, check_trt_version,  # noqa: E402
                                                engine_cache_dir, make_spec, trt_major)
from star_track.engines.torch_engine import TorchEngine  # noqa: E402

SPEC = EngineSpec(onnx_sha256="ab" * 32, trt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                  compute_capability="9.0", precision="fp16", min_batch=1, opt_batch=8, max_batch=8)


# --- version rules and engine cache keys (pure python) ---

@pytest.mark.parametrize("version", ["10.0.1", "10.13.0.35", "11.0.0", "11.4.1.2"])
def test_tensorrt_10_and_11_are_accepted(version):
    assert check_trt_version(version) == int(version.split(".")[0])


def test_tensorrt_9_is_refused_with_a_hint():
    assert trt_major("9.3.0") == 9
    with pytest.raises(EngineUnavailable, match=r"star-track\[gpu\]"):
        check_trt_version("9.3.0")


def test_cache_key_changes_with_every_field():
    keys = {SPEC.key()}
    for change in (dict(onnx_sha256="cd" * 32), dict(trt_version="11.0.0"), dict(gpu_name="RTX 4090"),
                   dict(compute_capability="8.9"), dict(precision="fp32"), dict(opt_batch=4), dict(max_batch=16),
                   dict(converter="onnx_fp16/2")):
        keys.add(replace(SPEC, **change).key())
    assert len(keys) == 9
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
    from star_track.errors import ModelError

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
    from star_track.errors import ModelError

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
    from export.tensorrt_step import Fp16Parity

    gpu, cpu = TorchEngine(ckpt), TorchEngine(ckpt, device="cpu")
    assert gpu.fp16 and gpu.name == "torch[cuda-fp16]"
    crops = synthetic_crops(128, 8, seed=2)
    # Percentiles, not the max (see export.tensorrt_step): the whole torch network runs in half, InstanceNorm
    # included; CPU half emulation on these crops: median 1.3e-3, p90 5.9e-3, max 1.4e-1.
    parity = Fp16Parity.compare(gpu.infer(crops), cpu.infer(crops), median_gate=5e-3, p90_gate=2.5e-2)
    assert parity.ok, str(parity)


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


# --- issue 15: precision, cache files and FP16 gates (CPU parts with stand-ins for tensorrt/torch) ---

class _Flags:
    """Stand-in for a tensorrt enum: attribute -> int."""

    def __init__(self, **members):
        self.__dict__.update(members)


class _FakeConfig:
    def __init__(self):
        self.set, self.cleared = [], []

    def set_flag(self, flag):
        self.set.append(flag)

    def clear_flag(self, flag):
        self.cleared.append(flag)


# Enum values as in the TensorRT 10.13 Python bindings (11.x drops FP16/INT8 and renumbers; names are used).
TRT10 = _Flags(BuilderFlag=_Flags(FP16=0, INT8=1, TF32=6), NetworkDefinitionCreationFlag=_Flags(STRONGLY_TYPED=1))
TRT11 = _Flags(BuilderFlag=_Flags(TF32=6), NetworkDefinitionCreationFlag=_Flags(STRONGLY_TYPED=1))


@pytest.mark.parametrize("trt", [TRT10, TRT11], ids=["trt10", "trt11"])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_builds_are_strongly_typed_without_weak_typing_flags_and_fp32_is_not_tf32(trt, precision):
    from star_track.engines.tensorrt_engine import configure_precision, network_flags

    assert network_flags(trt) == 1 << 1  # STRONGLY_TYPED on both majors (ignored, harmless, on 11)
    cfg = _FakeConfig()
    configure_precision(trt, cfg, precision)
    assert cfg.set == []  # never BuilderFlag.FP16: precision comes from the (FP16-converted) ONNX
    assert cfg.cleared == ([trt.BuilderFlag.TF32] if precision == "fp32" else [])


def test_spec_names_the_fp16_converter_version(tmp_path, monkeypatch):
    import star_track.engines.onnx_fp16 as onnx_fp16

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    fp16 = make_spec(model, "10.13", "gpu", "8.6", "fp16")
    assert fp16.converter == f"onnx_fp16/{onnx_fp16.CONVERTER_VERSION}"
    assert make_spec(model, "10.13", "gpu", "8.6", "fp32").converter == ""
    monkeypatch.setattr(onnx_fp16, "CONVERTER_VERSION", onnx_fp16.CONVERTER_VERSION + 1)
    assert make_spec(model, "10.13", "gpu", "8.6", "fp16").key() != fp16.key()  # a new converter rebuilds


def test_gpu_identity_describes_the_current_device(monkeypatch):
    import star_track.engines.tensorrt_engine as trt_engine

    asked = []

    class FakeCuda:
        @staticmethod
        def current_device():
            return 1

        @staticmethod
        def get_device_capability(d):
            asked.append(d)
            return (9, 0)

        @staticmethod
        def get_device_name(d):
            asked.append(d)
            return "second GPU"

    monkeypatch.setattr(trt_engine, "require_cuda_torch", lambda: type("T", (), {"cuda": FakeCuda}))
    assert trt_engine.gpu_identity() == ("second GPU", "9.0") and asked == [1, 1]


def test_cache_files_are_written_atomically_through_unique_temporary_names(tmp_path, monkeypatch):
    import star_track.engines.tensorrt_engine as trt_engine

    sources = []
    real_replace = trt_engine.os.replace
    monkeypatch.setattr(trt_engine.os, "replace", lambda a, b: (sources.append(a), real_replace(a, b)))
    target = tmp_path / "m.engine"
    trt_engine.atomic_write(target, b"one")
    trt_engine.atomic_write(target, b"two")
    assert target.read_bytes() == b"two" and len(set(sources)) == 2  # two builders never share a temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine"]


def test_the_fp16_onnx_is_a_temporary_build_input(tmp_path, monkeypatch):
    import star_track.engines.tensorrt_engine as trt_engine

    seen = []

    def build_from(trt, onnx_path, source, spec, workspace):
        seen.append((source, source.is_file(), onnx.load(str(source)).graph.input[0].name))
        return b"plan"

    monkeypatch.setattr(trt_engine, "_build_from", build_from)
    (tmp_path / "old.abcd.fp16.onnx").write_bytes(b"left by an older version")
    trt_engine._remove_leftovers(tmp_path)
    spec = make_spec(peaky_onnx_plain(), "10.13", "gpu", "8.6", "fp16")
    assert trt_engine._build_plan(None, peaky_onnx_plain(), spec, 1.0, tmp_path) == b"plan"
    assert seen[0][1] and seen[0][0] != peaky_onnx_plain()  # built from the converted file...
    assert list(tmp_path.iterdir()) == []  # ...which is gone afterwards, like the old leftovers


def test_torch_engine_leaves_the_callers_network_alone():
    net, ckpt, _ = peaky_model()
    meta = TorchEngine(ckpt, device="cpu").meta
    before = {k: v.clone() for k, v in net.state_dict().items()}
    eng = TorchEngine((net, meta), device="cpu", fp16=True)
    assert eng.fp16 and all(p.dtype == torch.float32 for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_fp16_gate_uses_percentiles_calibrated_on_cpu_emulation():
    """The mixed-precision ONNX that TensorRT builds, run by ONNX Runtime on CPU: its largest landmark error
    exceeds any sensible max-gate on this untrained network (hard-mask pixel flips), the percentiles do not."""
    from export.tensorrt_step import TRT_TOLERANCE, Fp16Parity

    path = peaky_onnx_plain()
    crops = synthetic_crops(128, 8, seed=1)
    ref = OnnxRuntimeEngine(path, providers=["CPUExecutionProvider"]).infer(crops)
    x = to_nchw_float(crops)
    try:
        half = ort.InferenceSession(convert_onnx_fp16(onnx.load(str(path))).SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"images": x})
    except Exception as exc:
        pytest.skip(f"ONNX Runtime CPU cannot run FP16 here: {str(exc)[:100]}")
    parity = Fp16Parity.compare((half[0], half[1]), ref)
    assert parity.ok, str(parity)
    assert parity.max > TRT_TOLERANCE  # why the old max-gate would fail the first GPU run
    bad = Fp16Parity.compare((half[0] + 0.05, half[1]), ref)
    assert not bad.ok and not Fp16Parity.compare((half[0] * np.nan, half[1]), ref).ok


@pytest.mark.gpu
def test_tensorrt_fp32_engine_is_ieee_fp32(tmp_path, monkeypatch):
    pytest.importorskip("tensorrt")
    from export.tensorrt_step import verify_tensorrt

    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path))
    parity = verify_tensorrt(peaky_onnx_plain(), max_batch=4, precision="fp32")
    assert parity.ok, str(parity)  # max |diff| <= 5e-3: TF32 products (10-bit mantissas) are cleared
