"""ONNX export: graph validity, dynamic batch, parity with PyTorch, in-graph decoding vs the numpy reference."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _export_helpers import SMALL, peakiness, peaky_model, peaky_onnx_plain  # noqa: E402

from star_track.nn.onnx_export import HEATMAP_TENSOR, OUTPUT_NAMES, verify_onnx  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.decode import decode_heatmaps  # noqa: E402
from star_track.engines.base import to_nchw_float  # noqa: E402
from star_track.nn.network import StarInference  # noqa: E402
from star_track.model.meta import METADATA_KEY, ModelMeta  # noqa: E402


def _run(path, crops):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"images": to_nchw_float(crops)})))


def test_graph_is_valid_with_metadata_and_dynamic_batch():
    _, _, path = peaky_model()
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == [*OUTPUT_NAMES, HEATMAP_TENSOR]
    meta = ModelMeta.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert (meta.scheme, meta.input_size) == ("300w68", 128)
    for batch in (1, 5):
        out = _run(path, synthetic_crops(128, batch, seed=batch))
        assert out["landmarks"].shape == (batch, 68, 2)
        assert out["covariance"].shape == (batch, 68, 2, 2)
        assert out[HEATMAP_TENSOR].shape == (batch, 68, 32, 32)


def test_plain_export_hides_heatmaps_but_keeps_the_named_tensor():
    model = onnx.load(str(peaky_onnx_plain()))
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert any(HEATMAP_TENSOR in n.output for n in model.graph.node)  # the FP16 split point for TensorRT


def test_onnx_matches_pytorch_on_peaky_heatmaps():
    net, _, path = peaky_model()
    crops = synthetic_crops(128, 3, seed=11)  # not the crops the heatmaps were tuned on
    got = _run(path, crops)
    assert peakiness(got[HEATMAP_TENSOR]) > 10  # a meaningful, non-flat comparison
    with torch.no_grad():
        ref_mean, ref_cov = (t.numpy() for t in StarInference(net)(torch.from_numpy(to_nchw_float(crops))))
    diff = np.abs(got["landmarks"] - ref_mean).max(axis=-1)
    # Float32 reordering noise (~2e-5 relative in the heatmaps) moves a soft-argmax in proportion to the
    # map's spread: compact, trained-like maps must agree to 1e-4; broad multi-modal ones to 1e-3.
    compact = (ref_cov[..., 0, 0] + ref_cov[..., 1, 1]) < 0.1
    assert compact.mean() > 0.15, "test model lost its compact heatmaps"
    assert diff[compact].max() <= 1e-4
    assert diff.max() <= 1e-3
    parity = verify_onnx(path, net, crops, tolerance=1e-3)
    assert parity.ok and parity.landmarks == pytest.approx(diff.max(), abs=1e-7)


def test_onnx_matches_pytorch_within_1e4_on_default_crops(tmp_path):
    from star_track.nn.onnx_export import export_onnx
    from star_track.nn.checkpoint import meta_for
    from star_track.nn.network import StarNet

    torch.manual_seed(1)
    net = StarNet(SMALL).eval()  # plain random weights: broad heatmaps, compared on what they produce
    path = export_onnx(net, meta_for(SMALL, "random"), tmp_path / "random.onnx")
    parity = verify_onnx(path, net)  # default crops and tolerance 1e-4
    assert parity.ok, str(parity)
    assert parity.heatmaps is None


def test_in_graph_decoding_equals_numpy_reference():
    _, _, path = peaky_model()
    out = _run(path, synthetic_crops(128, 4, seed=3))
    mean, cov = decode_heatmaps(out[HEATMAP_TENSOR])
    np.testing.assert_allclose(out["landmarks"], mean, atol=2e-6)
    np.testing.assert_allclose(out["covariance"], cov, rtol=1e-3, atol=1e-6)


def test_cli_exports_an_official_checkpoint_and_reports_parity(tmp_path):
    from typer.testing import CliRunner

    from export.cli import app

    net, _, _ = peaky_model()
    pkl = tmp_path / "WFLW_like.pkl"
    torch.save({"net": {f"module.{k}": v for k, v in net.state_dict().items()}, "optimizer": {},
                "scheduler": None, "epoch": 1, "net_ema": None}, pkl)
    result = CliRunner().invoke(app, [str(pkl), str(tmp_path / "m.onnx"), "--input-size", "128", "--name", "imp",
                                       "--tolerance", "1e-3"])  # broad maps in places: see the test above
    assert result.exit_code == 0, result.output
    assert "ONNX Runtime vs PyTorch" in result.output and "-> ok" in result.output
    out = _run(tmp_path / "m.onnx", synthetic_crops(128, 2))
    assert out["landmarks"].shape == (2, 68, 2)


def test_cli_tensorrt_without_tensorrt_fails_with_install_hint(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from typer.testing import CliRunner

    from export.cli import app

    _, ckpt, _ = peaky_model()
    result = CliRunner().invoke(app, [str(ckpt), str(tmp_path / "x.onnx"), "--tensorrt"])
    assert result.exit_code == 1
    assert 'pip install "star-track[gpu]"' in result.output
    assert not (tmp_path / "x.onnx").exists()  # failed before spending time on the export


def test_cli_rejects_missing_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from export.cli import app

    # a long path must not be wrapped onto several lines (the message stays greppable on any terminal)
    missing = tmp_path / ("d" * 150) / "missing.pt"
    result = CliRunner().invoke(app, [str(missing)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{missing}: does not exist" in lines[0], result.output


def test_small_config_matches_the_brief():
    assert SMALL.num_stacks == 2 and SMALL.channels == 32 and SMALL.heatmap_size == 32
