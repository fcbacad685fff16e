"""export.decoding / ``python -m train redecode``: a model exported with the earlier elementwise decoding gets the
moments decoding, with the same outputs, and nothing is lost when the check fails."""
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import star_track.nn.network as network  # noqa: E402
from export.decoding import swap_decoding  # noqa: E402
from export.graph_edit import verify_rewrite  # noqa: E402
from star_track.decode import decode_heatmaps  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.model.meta import HEATMAP_TENSOR, INPUT_NAME  # noqa: E402

from _export_helpers import SMALL, peaky_model  # noqa: E402


def elementwise_decoding(heatmaps):
    """The decoding as exported before the moments form: every sum an elementwise product over the maps."""
    b, n, h, w = heatmaps.shape
    hm = heatmaps.float().clamp_min(0)
    p = hm / hm.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    gx = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w)
    gy = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1)
    mx, my = (p * gx).sum(dim=(2, 3)), (p * gy).sum(dim=(2, 3))
    dx, dy = gx - mx.view(b, n, 1, 1), gy - my.view(b, n, 1, 1)
    v1 = p.sum(dim=(2, 3)) + 1e-5
    denom = v1 - ((p * p).sum(dim=(2, 3)) + 1e-5) / v1
    sxx, sxy, syy = ((p * u).sum(dim=(2, 3)) / denom for u in (dx * dx, dx * dy, dy * dy))
    cov = torch.stack([torch.stack([sxx, sxy], -1), torch.stack([sxy, syy], -1)], -2)
    return torch.stack([mx, my], -1), cov


@pytest.fixture(scope="module")
def old_model(tmp_path_factory):
    from star_track.nn.checkpoint import meta_for
    from star_track.nn.onnx_export import export_onnx

    net = peaky_model()[0]
    path = tmp_path_factory.mktemp("old") / "old.onnx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(network, "decode_heatmaps_torch", elementwise_decoding)
        export_onnx(net, meta_for(SMALL, "small-old"), path, with_heatmaps=True)
    return path


def run(path, crops):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {INPUT_NAME: x})))


def test_swapped_graph_decodes_as_the_reference_with_fewer_operations(old_model, tmp_path):
    new = swap_decoding(old_model, tmp_path / "new.onnx")
    crops = synthetic_crops(SMALL.input_size, batch=3, seed=4)
    diffs = verify_rewrite(new, old_model, crops)
    assert diffs["landmarks"] < 1e-5 and diffs["covariance_rel"] < 1e-4
    got = run(new, crops)
    mean, cov = decode_heatmaps(got[HEATMAP_TENSOR])  # the heatmaps output is kept and is what is decoded
    np.testing.assert_allclose(got["landmarks"], mean, atol=1e-5)
    np.testing.assert_allclose(got["covariance"], cov, atol=1e-5)
    old_nodes, new_nodes = (onnx.load(str(p)).graph.node for p in (old_model, new))
    assert any(n.op_type == "MatMul" and n.name.startswith("decoding/") for n in new_nodes)
    assert len(new_nodes) < len(old_nodes)
    with pytest.raises(ValueError, match="already has the moments decoding"):
        swap_decoding(new, tmp_path / "again.onnx")


def test_redecode_command_replaces_the_file_and_scales_the_card(old_model, tmp_path):
    from typer.testing import CliRunner

    from train.__main__ import app

    model = shutil.copy(old_model, tmp_path / "m.onnx")
    card = tmp_path / "m.md"
    card.write_text("# m\n\n| file | `m.onnx`, 9.9 MB, opset 17 |\n| CPU latency | 2.00 ms per face, ONNX Runtime, measured "
                    "here. |\n| other | row |\n")
    res = CliRunner().invoke(app, ["redecode", str(model)])
    assert res.exit_code == 0, res.output
    assert any(n.name.startswith("decoding/") for n in onnx.load(str(model)).graph.node)
    row = next(line for line in card.read_text().splitlines() if line.startswith("| CPU latency |"))
    assert "the earlier graph: 2.00 ms per face, ONNX Runtime, measured here. |" in row
    assert "| other | row |" in card.read_text()
    assert f"| file | `m.onnx`, {model.stat().st_size / 1e6:.1f} MB, opset 17 |" in card.read_text()
    assert not list(tmp_path.glob("*.rewrite.onnx"))
    again = CliRunner().invoke(app, ["redecode", str(model)])
    assert again.exit_code != 0 and "already has the moments decoding" in again.output


def test_a_failed_check_leaves_the_original(old_model, tmp_path, monkeypatch):
    import export.graph_edit
    from train.rewrite import redecode

    model = shutil.copy(old_model, tmp_path / "m.onnx")
    before = model.read_bytes()

    def fail(*args, **kwargs):
        raise ValueError("does not reproduce")
    monkeypatch.setattr(export.graph_edit, "verify_rewrite", fail)
    with pytest.raises(ValueError, match="does not reproduce"):
        redecode(model)
    assert model.read_bytes() == before and not list(tmp_path.glob("*.rewrite.onnx"))
