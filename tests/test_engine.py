"""ONNX Runtime engine, engine factory and model registry on the real export path (random-weight stand-in)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from star_track.engines import EngineUnavailable, create_engine, engine_names, register_engine
from star_track.engines.base import LandmarkEngine
from star_track.errors import ModelError
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine, preferred_providers
from star_track.model.registry import list_models, model_card, resolve_model


def test_engine_outputs_and_metadata(standin_model):
    eng = OnnxRuntimeEngine(standin_model)
    assert isinstance(eng, LandmarkEngine)
    assert eng.meta.scheme == "300w68" and eng.meta.input_size == 128
    assert eng.name.startswith("onnxruntime[")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, size=(3, 128, 128, 3), dtype=np.uint8)
    mean, cov = eng.infer(crops)
    assert mean.shape == (3, 68, 2) and cov.shape == (3, 68, 2, 2)
    assert mean.dtype == np.float32 and np.isfinite(mean).all() and np.isfinite(cov).all()
    assert np.abs(mean).max() <= 1.0 + 1e-5
    np.testing.assert_allclose(cov, np.swapaxes(cov, -1, -2), atol=1e-6)  # symmetric
    assert (np.linalg.eigvalsh(cov.astype(np.float64)) > -1e-6).all()  # PSD
    # batching does not change results, and different crops give different outputs
    single, _ = eng.infer(crops[1:2])
    np.testing.assert_allclose(single[0], mean[1], atol=1e-4)
    assert np.abs(mean[0] - mean[1]).max() > 1e-4
    empty_m, empty_c = eng.infer(np.zeros((0, 128, 128, 3), np.uint8))
    assert empty_m.shape == (0, 68, 2)
    with pytest.raises(ValueError, match="crops must be"):
        eng.infer(np.zeros((1, 64, 64, 3), np.uint8))


def test_provider_order():
    assert preferred_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert preferred_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_bad_models_raise_model_error(tmp_path, wrong_count_model, standin_model):
    with pytest.raises(ModelError, match="does not exist"):
        OnnxRuntimeEngine(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="not a file"):
        OnnxRuntimeEngine(tmp_path)
    text = tmp_path / "text.onnx"
    text.write_text("this is not a model")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxRuntimeEngine(text)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(standin_model.read_bytes()[:5000])
    with pytest.raises(ModelError):
        OnnxRuntimeEngine(truncated)
    with pytest.raises(ModelError, match="landmarks but its metadata declares scheme wflw98"):
        OnnxRuntimeEngine(wrong_count_model)


def test_model_without_metadata(tmp_path, standin_model):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(standin_model))
    del m.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(m, str(plain))
    with pytest.raises(ModelError, match="no 'star_track' metadata"):
        OnnxRuntimeEngine(plain)


def test_create_engine_factory(standin_model):
    eng = create_engine(standin_model)  # auto: no GPU here -> onnxruntime
    assert eng.name.startswith("onnxruntime") or eng.name.startswith("tensorrt")
    assert create_engine(str(standin_model), "onnxruntime").meta.scheme == "300w68"
    with pytest.raises(ValueError, match="unknown engine"):
        create_engine(standin_model, "nope")
    assert {"onnxruntime", "torch", "tensorrt"} <= set(engine_names())


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_unavailable_engine_gives_install_hint(standin_model):
    with pytest.raises((EngineUnavailable, ModelError, RuntimeError), match=r"star-track\[gpu\]"):
        create_engine(standin_model, "tensorrt")


def test_register_custom_engine(standin_model):
    calls = []

    def loader(path):
        calls.append(path)
        return OnnxRuntimeEngine(path)

    register_engine("custom-test", loader)
    eng = create_engine(standin_model, "custom-test")
    assert calls == [standin_model] and eng.meta.name == "standin"


def test_model_registry(tmp_path, monkeypatch, standin_model):
    monkeypatch.setenv("STAR_TRACK_CACHE", str(tmp_path))
    models = tmp_path / "models"
    models.mkdir()
    (models / "mine.onnx").write_bytes(standin_model.read_bytes())
    (models / "mine.md").write_text("# mine\nrandom weights")
    assert resolve_model("mine") == models / "mine.onnx"
    assert resolve_model(standin_model) == standin_model
    assert resolve_model(str(standin_model)) == standin_model
    assert model_card(models / "mine.onnx").startswith("# mine")
    assert any(e.name == "mine" and e.source == "cache" for e in list_models())
    with pytest.raises(ModelError, match="no model named 'other'.*mine"):
        resolve_model("other")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="directory"):
        resolve_model(str(tmp_path) + "/")


def test_one_error_family_with_the_builtin_bases():
    """Every error star-track raises on purpose is a StarTrackError and keeps its built-in base; an output that
    cannot be written is an OutputError beside (not under) VideoError, so a full disk while writing a landmark
    file is never mistaken for a bad video."""
    from star_track import errors

    for cls in (errors.ModelError, errors.DetectorError, errors.EngineUnavailable, errors.MissingDependency,
                errors.VideoError, errors.OutputError, errors.ConcurrentUseError, errors.ClusterError):
        assert issubclass(cls, errors.StarTrackError)
    assert issubclass(errors.ModelError, ValueError) and issubclass(errors.MissingDependency, ImportError)
    assert issubclass(errors.VideoError, RuntimeError) and issubclass(errors.OutputError, RuntimeError)
    assert not issubclass(errors.OutputError, errors.VideoError)
    assert not issubclass(errors.VideoError, errors.OutputError)
    assert issubclass(errors.OutputClosed, errors.OutputError)


def test_onnxruntime_sessions_do_not_spin_and_take_the_thread_count(standin_model):
    """Spinning pool threads steal the cores of other processes on a busy machine: it must be off, and the
    thread count asked for (SDK ``threads=``, CLI ``--threads``) must reach the session."""
    from star_track.engines.onnxruntime_engine import default_threads, session_options

    opts = session_options(3)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 3
    assert OnnxRuntimeEngine(standin_model).threads == default_threads() == 1
    assert create_engine(standin_model, "onnxruntime", threads=2).threads == 2
    with pytest.raises(ValueError):
        OnnxRuntimeEngine(standin_model, threads=-1)


def test_a_batch_is_split_across_the_cores_only_by_default(standin_model, monkeypatch):
    """threads=None: several crops run as slices on parallel threads, with the results of one run of the batch;
    an explicit thread count (``star-track batch`` workers: 1) never splits."""
    import threading

    from star_track.engines.onnxruntime_engine import usable_cores

    auto, one = OnnxRuntimeEngine(standin_model), OnnxRuntimeEngine(standin_model, threads=1)
    assert auto.batch_threads == usable_cores() and one.batch_threads == 1
    auto.batch_threads = 3  # whatever this machine has
    seen: list[tuple[int, str]] = []
    real = auto._run

    def spy(x):
        seen.append((len(x), threading.current_thread().name))
        return real(x)

    monkeypatch.setattr(auto, "_run", spy)
    crops = np.random.default_rng(1).integers(0, 255, size=(5, 128, 128, 3), dtype=np.uint8)
    for n in (1, 2, 5):
        seen.clear()
        for got, want in zip(auto.infer(crops[:n]), one.infer(crops[:n])):
            np.testing.assert_allclose(got, want, atol=1e-5)
        assert sorted(k for k, _ in seen) == {1: [1], 2: [1, 1], 5: [1, 2, 2]}[n]
        # The caller's thread runs one slice and the pool the others (on a busy machine one pool thread may
        # take two slices in turn).
        names = {name for _, name in seen}
        assert threading.current_thread().name in names and (len(names) > 1) == (n > 1)
    assert auto._pool is not None
    auto.close()
    auto.close()  # idempotent
    assert auto._pool is None
    np.testing.assert_allclose(auto.infer(crops)[0], one.infer(crops)[0], atol=1e-5)  # still usable


def test_closing_a_tracker_stops_its_engines_batch_threads(standin_model, face_photo):
    from star_track import Tracker

    tracker = Tracker(standin_model, flip_test=True)  # a flip pair is a batch of two
    tracker.detect_image(face_photo[0])
    inner = tracker.engine.engine
    assert inner.batch_threads == 1 or inner._pool is not None
    tracker.close()
    assert inner._pool is None


def test_an_int8_body_runs_as_its_float_source_on_an_nvidia_machine(monkeypatch):
    """Bundled ``NAME-int8`` models are for CPUs; where an NVIDIA GPU is, the float ``NAME`` runs instead."""
    import star_track.engines as engines
    from star_track.engines import float_source

    q = resolve_model("star68-fast-int8")
    assert float_source(q) == resolve_model("star68-fast")
    assert float_source(resolve_model("star98-fast")) == resolve_model("star98-fast")  # a float model itself
    assert create_engine("star68-fast-int8", "onnxruntime").path == q  # no GPU here: the INT8 graph
    monkeypatch.setattr(engines, "has_nvidia_gpu", lambda: True)
    assert create_engine("star68-fast-int8", "onnxruntime").path == resolve_model("star68-fast")


def test_the_int8_body_keeps_the_float_models_points(face_photo):
    """``python -m train quantize``'s bundled results agree with their float models on a real face crop."""
    from star_track.crop import crop_from_landmarks

    img, gt, _ = face_photo
    for name in ("star68-fast", "star68-precise"):
        f, q = OnnxRuntimeEngine(resolve_model(name)), OnnxRuntimeEngine(resolve_model(f"{name}-int8"))
        crop = crop_from_landmarks(gt, f.meta.input_size, f.meta.crop_scale).warp(img)[None]
        (mf, cf), (mq, cq) = f.infer(crop), q.infer(crop)
        px = np.linalg.norm(mf - mq, axis=-1) * f.meta.input_size / 2
        assert px.mean() < 0.5 and px.max() < 3.0, (name, px.mean(), px.max())
        assert np.allclose(np.trace(cq, axis1=-2, axis2=-1), np.trace(cf, axis1=-2, axis2=-1), rtol=0.35)
