"""train.onnx_weights: an exported model back to a trainable network, BatchNorms the exporter folded restored."""
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from _export_helpers import SMALL  # noqa: E402

from star_track.nn.onnx_export import export_onnx  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.nn.checkpoint import load_checkpoint, meta_for  # noqa: E402
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402
from star_track.nn.network import NetworkConfig, StarInference, StarNet  # noqa: E402
from train.onnx_weights import checkpoint_from_onnx, network_from_onnx  # noqa: E402


def _trained_like(config, seed: int) -> StarNet:
    """Random weights with non-trivial BatchNorm statistics, so folding them changes the conv weights."""
    torch.manual_seed(seed)
    net = StarNet(config)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("block", ["bottleneck", "inverted"])
def test_imported_network_computes_the_onnx_function(tmp_path, block):
    config = replace(SMALL, block=block)
    net = _trained_like(config, 0)
    path = export_onnx(net, meta_for(config, "m"), tmp_path / "m.onnx")
    crops = synthetic_crops(config.input_size, 6)
    back, meta = network_from_onnx(path, crops)
    assert meta.name == "m" and back.config == config
    means, covs = OnnxRuntimeEngine(path).infer(crops)
    with torch.no_grad():
        m, c = StarInference(back.eval())(torch.from_numpy(crops.transpose(0, 3, 1, 2)).float())
    np.testing.assert_allclose(m.numpy(), means, atol=1e-4)
    np.testing.assert_allclose(c.numpy(), covs, atol=1e-4)
    # the restored BatchNorms normalise what they see: train mode (batch statistics) stays near the function
    back.train()
    with torch.no_grad():
        m_train, _ = StarInference(back)(torch.from_numpy(crops.transpose(0, 3, 1, 2)).float())
    assert np.abs(m_train.numpy() - means).mean() < 0.05


def test_checkpoint_loads_as_init_weights(tmp_path):
    net = _trained_like(SMALL, 1)
    path = export_onnx(net, meta_for(SMALL, "m"), tmp_path / "m.onnx")
    crops = synthetic_crops(SMALL.input_size, 4)
    ckpt = checkpoint_from_onnx(path, crops, tmp_path / "m.pt")
    loaded, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        a = loaded(torch.zeros(1, 3, SMALL.input_size, SMALL.input_size))[0][-1]
        b = network_from_onnx(path, crops)[0](torch.zeros(1, 3, SMALL.input_size, SMALL.input_size))[0][-1]
    torch.testing.assert_close(a, b)


def test_a_foreign_onnx_file_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="not a star-track model"):
        network_from_onnx(tmp_path / "other.onnx", synthetic_crops(SMALL.input_size, 1))


def test_widening_the_expansion_keeps_the_function(tmp_path):
    from star_track.nn.checkpoint import load_checkpoint, write_checkpoint
    from train.widen import widen_checkpoint, widen_expansion

    cfg = NetworkConfig("300w68", num_stacks=1, channels=16, depth=2, input_size=64, block="inverted", expand=2)
    net = _trained_like(cfg, 0)
    x = torch.randn(2, 3, 64, 64)
    wide = widen_expansion(net, 3)
    assert wide.config.expand == 3
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in net.parameters())
    for a, b in zip(net(x)[0], wide(x)[0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    src = write_checkpoint(tmp_path / "narrow.pt", {"config": cfg.to_dict(), "model": net.state_dict(), "ema": None})
    loaded, _ = load_checkpoint(widen_checkpoint(src, 3, tmp_path / "wide.pt"))
    torch.testing.assert_close(loaded(x)[0][-1], net(x)[0][-1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="below"):
        widen_expansion(net, 1)


def test_widening_only_the_inner_blocks_keeps_the_function():
    from star_track.nn.network import InvertedResBlock
    from train.widen import widen_expansion

    cfg = NetworkConfig("300w68", num_stacks=2, channels=16, depth=2, input_size=64, block="inverted", expand=2)
    net = _trained_like(cfg, 2)
    wide = widen_expansion(net, 2, inner_expand=4)
    assert wide.config.inner_expand == 4
    mids = {name: m.body[0].out_channels for name, m in wide.named_modules() if isinstance(m, InvertedResBlock)}
    # top resolution (stem, up1, features) keeps 2x16; every block below it is 4x16
    assert mids["hgs.0.up1"] == mids["pre.8"] == mids["features.1.0"] == 32
    assert mids["hgs.0.low1"] == mids["hgs.1.low2.up1"] == mids["hgs.1.low2.low2"] == 64
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(net(x)[0], wide(x)[0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert widen_expansion(wide, 3, inner_expand=4).config.inner_expand == 4
    with pytest.raises(ValueError, match="inner_expand 3 is below"):
        widen_expansion(wide, 2, inner_expand=3)
