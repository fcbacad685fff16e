"""export.streamline / ``python -m train streamline``: exact clean-ups of an exported INT8 graph (sibling heads merged,
the CoordConv batch size read from the input, constant coordinate maps quantized once); nothing lost on a failed
check."""
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from export.streamline import MERGED, streamline  # noqa: E402
from star_track.engines.base import to_nchw_float  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.model.meta import INPUT_NAME  # noqa: E402

from _export_helpers import peaky_onnx_plain  # noqa: E402


@pytest.fixture(scope="module")
def plain_int8(tmp_path_factory):
    """An INT8 model as the quantizer writes it before its own streamlining."""
    import export.quantize as quantize

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize, "_streamline", lambda *args: None)
        return quantize.quantize_body(peaky_onnx_plain(), tmp_path_factory.mktemp("q") / "m.onnx",
                                      synthetic_crops(128, batch=16, seed=1))


def outputs(path, crops):
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


def test_streamline_command_replaces_the_file_and_scales_the_card(plain_int8, tmp_path):
    from typer.testing import CliRunner

    from train.__main__ import app

    model = shutil.copy(plain_int8, tmp_path / "m.onnx")
    card = tmp_path / "m.md"
    card.write_text("# m\n\n| file | `m.onnx`, 9.9 MB, opset 17 |\n| CPU latency | 2.00 ms per face, ONNX Runtime, measured "
                    "here. |\n")
    res = CliRunner().invoke(app, ["streamline", str(model)])
    assert res.exit_code == 0, res.output
    assert any(n.name.endswith(MERGED) for n in onnx.load(str(model)).graph.node)
    row = next(line for line in card.read_text().splitlines() if line.startswith("| CPU latency |"))
    assert "streamlined (`python -m train streamline`" in row and row.endswith("the earlier graph: 2.00 ms per face, "
                                                                             "ONNX Runtime, measured here. |")
    assert not list(tmp_path.glob("*.rewrite.onnx"))
    again = CliRunner().invoke(app, ["streamline", str(model)])
    assert again.exit_code != 0 and "nothing to streamline" in again.output


def test_a_failed_check_leaves_the_original(plain_int8, tmp_path, monkeypatch):
    import export.graph_edit
    from train.rewrite import streamline as streamline_in_place

    model = shutil.copy(plain_int8, tmp_path / "m.onnx")
    before = model.read_bytes()

    def fail(*args, **kwargs):
        raise ValueError("does not reproduce")
    monkeypatch.setattr(export.graph_edit, "verify_rewrite", fail)
    with pytest.raises(ValueError, match="does not reproduce"):
        streamline_in_place(model)
    assert model.read_bytes() == before and not list(tmp_path.glob("*.rewrite.onnx"))
