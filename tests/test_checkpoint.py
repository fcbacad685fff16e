"""Checkpoint import: our trainer's .pt and the official STAR .pkl layout (synthetic: the real file is not here)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from star_track.nn.checkpoint import (OFFICIAL_SCHEMES, detect_scheme, infer_config, load_checkpoint,  # noqa: E402
                                   map_official_keys, meta_for, save_checkpoint)
from star_track.errors import ModelError  # noqa: E402
from star_track.nn.network import NetworkConfig, StarInference, StarNet  # noqa: E402

SMALL = NetworkConfig(scheme="300w68", num_stacks=2, channels=32, depth=3, input_size=128)


@pytest.fixture(scope="module")
def net() -> StarNet:
    torch.manual_seed(0)
    n = StarNet(SMALL)
    with torch.no_grad():  # non-trivial BN statistics so that a wrong mapping would show in the outputs
        for m in n.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return n.eval()


def official_state(net: StarNet) -> dict:
    """``net``'s weights in the reference layout: plus a (never used) skip_layer in every ResBlock."""
    from star_track.nn.network import ResBlock

    state = dict(net.state_dict())
    for name, mod in net.named_modules():
        if isinstance(mod, ResBlock) and mod.skip_layer is None:
            cout, cin = mod.conv3.conv.out_channels, mod.conv1.conv.in_channels
            state[f"{name}.skip_layer.conv.weight"] = torch.randn(cout, cin, 1, 1)
            state[f"{name}.skip_layer.conv.bias"] = torch.randn(cout)
    return state


def _official(state: dict, prefix: str = "module.") -> dict:
    """Wrap a state dict the way the reference trainer saves it."""
    return {"net": {prefix + k: v for k, v in state.items()}, "optimizer": {"state": {}}, "scheduler": None,
            "epoch": 499, "net_ema": None}


def _outputs(model: StarNet) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(5)
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.no_grad():
        mean, cov = StarInference(model.eval())(x)
    return mean.numpy(), cov.numpy()


def test_official_layout_has_every_key_of_the_spec(net):
    keys = set(official_state(net))
    assert official_state(net)["pre.0.conv.weight"].shape == (64, 6, 7, 7)
    assert {"hgs.0.coordconv.conv.weight", "hgs.1.up1.skip_layer.conv.weight", "features.1.1.bn.running_var",
            "out_edgemaps.1.conv.bias", "merge_pointmaps.0.conv.weight", "e2h_transform.weight",
            "e2h_transform.bias", "hgs.0.low2.low2.low1.conv2.conv.weight"} <= keys


def test_official_pkl_round_trip(net, tmp_path):
    path = tmp_path / "300W_STARLoss.pkl"
    state = official_state(net)
    torch.save(_official(state), path)
    loaded, meta = load_checkpoint(path, input_size=128)
    assert loaded.config == SMALL  # stacks, channels, depth and scheme all read from shapes
    assert meta.scheme == "300w68" and meta.input_size == 128 and meta.extra["epoch"] == 499
    assert meta.extra["unused_tensors_dropped"] == len(state) - len(net.state_dict()) > 0
    for a, b in zip(_outputs(net), _outputs(loaded)):
        np.testing.assert_array_equal(a, b)


def test_official_default_input_size_is_256(net, tmp_path):
    path = tmp_path / "x.pkl"
    torch.save(_official(official_state(net), prefix=""), path)
    loaded, meta = load_checkpoint(path)
    assert loaded.config.input_size == 256 and meta.input_size == 256


def test_extra_conv_nesting_and_stacked_prefixes_are_mapped(net):
    state = {}
    for k, v in official_state(net).items():
        k = k.replace("coordconv.conv.", "coordconv.conv.conv.")
        state["module._orig_mod." + k] = v
    mapped = map_official_keys(state)
    assert set(mapped) == set(official_state(net))


def test_missing_and_unexpected_keys_are_listed(net, tmp_path):
    state = official_state(net)
    del state["hgs.1.low3.bn2.weight"]
    state["hgs.1.attention.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pkl"
    torch.save(_official(state), path)
    with pytest.raises(ModelError) as err:
        load_checkpoint(path, input_size=128)
    text = str(err.value)
    assert "missing (1): hgs.1.low3.bn2.weight" in text
    assert "unexpected (1): hgs.1.attention.weight" in text


def test_shape_mismatch_is_reported(net):
    from star_track.nn.checkpoint import build_network

    state = dict(net.state_dict())
    state["out_heatmaps.0.conv.bias"] = torch.zeros(5)
    with pytest.raises(ModelError, match="shape mismatch"):
        build_network(SMALL, state)


@pytest.mark.parametrize(("shape", "scheme"), [((n, e, 1, 1), s) for (n, e), s in OFFICIAL_SCHEMES.items()])
def test_scheme_from_e2h_shape(shape, scheme):
    assert detect_scheme({"e2h_transform.weight": torch.zeros(shape)}) == scheme


def test_unknown_e2h_shape_fails_clearly():
    with pytest.raises(ModelError, match="known schemes"):
        detect_scheme({"e2h_transform.weight": torch.zeros(50, 9, 1, 1)})


def test_infer_config_reads_depth_and_width():
    cfg = NetworkConfig(scheme="cofw29", num_stacks=1, channels=16, depth=4, input_size=128)
    assert infer_config(StarNet(cfg).state_dict(), input_size=128) == cfg


def test_our_checkpoint_prefers_ema(net, tmp_path):
    ema = {k: (v + 0.01 if v.is_floating_point() and "e2h" not in k else v) for k, v in net.state_dict().items()}
    path = save_checkpoint(net, tmp_path / "ours.pt", meta_for(SMALL, "mine", note="x"), ema_state=ema)
    with_ema, meta = load_checkpoint(path)
    raw, _ = load_checkpoint(path, prefer_ema=False)
    assert meta.name == "mine" and meta.extra == {"note": "x"}
    assert torch.equal(raw.state_dict()["pre.0.conv.bias"], net.state_dict()["pre.0.conv.bias"])
    assert torch.equal(with_ema.state_dict()["pre.0.conv.bias"], ema["pre.0.conv.bias"])


def test_trainer_payload_without_meta_loads(net, tmp_path):
    path = tmp_path / "last.pt"  # the layout train/trainer.py writes
    torch.save({"config": SMALL.to_dict(), "train_config": "{}", "model": net.state_dict(), "ema": None,
                "epoch": 3, "best": 0.1}, path)
    loaded, meta = load_checkpoint(path)
    assert loaded.config == SMALL and meta.scheme == "300w68" and meta.input_size == 128


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": [1, 2]}, path)
    with pytest.raises(ModelError, match="not a star-track checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
