"""Rewriting exported models in place: export.decoding / ``python -m train redecode`` (a model exported with the
earlier elementwise decoding gets the moments decoding, with the same outputs) and export.streamline / ``python -m
train streamline`` (exact clean-ups of an INT8 graph: sibling heads merged, the CoordConv batch size read from the
input, constant coordinate maps quantized once); each command replaces the file and scales its card, and nothing is
lost when the check fails."""
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import star_track.nn.network as network  # noqa: E402
from export.decoding import swap_decoding  # noqa: E402
from export.graph_edit import verify_rewrite  # noqa: E402
from export.streamline import MERGED, streamline  # noqa: E402
from star_track.engines.base import to_nchw_float  # noqa: E402
from star_track.decode import decode_heatmaps  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.model.meta import HEATMAP_TENSOR, INPUT_NAME  # noqa: E402

from _export_helpers import SMALL, peaky_model, peaky_onnx_plain  # noqa: E402


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


@pytest.fixture(scope="module")
def plain_int8(tmp_path_factory):
    """An INT8 model as the quantizer writes it before its own streamlining."""
    import export.quantize as quantize

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize, "_streamline", lambda *args: None)
        return quantize.quantize_body(peaky_onnx_plain(), tmp_path_factory.mktemp("q") / "m.onnx",
                                      synthetic_crops(128, batch=16, seed=1))


def outputs(path, crops):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(["landmarks", "covariance"], {INPUT_NAME: to_nchw_float(crops)})


def test_streamlined_graph_gives_the_same_outputs_at_any_batch(plain_int8, tmp_path):
    out = tmp_path / "s.onnx"
    done = streamline(plain_int8, out)
    assert done == {"merged_convs": 2, "batch_from_input": 3, "prequantized": 3}  # 2 stacks, 3 CoordConvs
    for batch in (1, 3):
        crops = synthetic_crops(128, batch=batch, seed=5)
        for a, b in zip(outputs(out, crops), outputs(plain_int8, crops)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    g = onnx.load(str(out)).graph
    producer = {t: n.op_type for n in g.node for t in n.output}
    assert not [n for n in g.node if n.op_type == "Shape" and producer.get(n.input[0]) == "DequantizeLinear"]
    assert sum(n.name.endswith(MERGED) for n in g.node) == 2
    before = onnx.load(str(plain_int8)).graph
    assert sum(n.op_type == "QuantizeLinear" for n in g.node) == sum(n.op_type == "QuantizeLinear"
                                                                     for n in before.node) - 3
    with pytest.raises(ValueError, match="nothing to streamline"):
        streamline(out, tmp_path / "again.onnx")


def test_the_quantizer_streamlines_what_it_writes(tmp_path):
    from export.quantize import quantize_body

    out = quantize_body(peaky_onnx_plain(), tmp_path / "q.onnx", synthetic_crops(128, batch=8, seed=1))
    assert any(n.name.endswith(MERGED) for n in onnx.load(str(out)).graph.node)
    assert not list(tmp_path.glob("*.streamlined"))


REWRITES = [("redecode", "old_model", "decoding/", "with the decoding as moments", "already has the moments decoding"),
            ("streamline", "plain_int8", MERGED, "streamlined", "nothing to streamline")]
"""command, source model fixture, a node name part the rewrite adds, its card label, the error of a second run."""


@pytest.mark.parametrize("command, source, added, label, again_error", REWRITES)
def test_command_replaces_the_file_and_scales_the_card(command, source, added, label, again_error, request, tmp_path):
    from typer.testing import CliRunner

    from train.__main__ import app

    model = shutil.copy(request.getfixturevalue(source), tmp_path / "m.onnx")
    card = tmp_path / "m.md"
    card.write_text("# m\n\n| file | `m.onnx`, 9.9 MB, opset 17 |\n| CPU latency | 2.00 ms per face, ONNX Runtime, measured "
                    "here. |\n| other | row |\n")
    res = CliRunner().invoke(app, [command, str(model)])
    assert res.exit_code == 0, res.output
    assert any(added in n.name for n in onnx.load(str(model)).graph.node)
    row = next(line for line in card.read_text().splitlines() if line.startswith("| CPU latency |"))
    assert label in row and row.endswith("the earlier graph: 2.00 ms per face, ONNX Runtime, measured here. |")
    assert "| other | row |" in card.read_text()
    assert f"| file | `m.onnx`, {model.stat().st_size / 1e6:.1f} MB, opset 17 |" in card.read_text()
    assert not list(tmp_path.glob("*.rewrite.onnx"))
    again = CliRunner().invoke(app, [command, str(model)])
    assert again.exit_code != 0 and again_error in again.output


@pytest.mark.parametrize("command, source", [r[:2] for r in REWRITES])
def test_a_failed_check_leaves_the_original(command, source, request, tmp_path, monkeypatch):
    import export.graph_edit
    import train.rewrite

    model = shutil.copy(request.getfixturevalue(source), tmp_path / "m.onnx")
    before = model.read_bytes()

    def fail(*args, **kwargs):
        raise ValueError("does not reproduce")
    monkeypatch.setattr(export.graph_edit, "verify_rewrite", fail)
    with pytest.raises(ValueError, match="does not reproduce"):
        getattr(train.rewrite, command)(model)
    assert model.read_bytes() == before and not list(tmp_path.glob("*.rewrite.onnx"))
