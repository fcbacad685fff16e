"""train.ship98: the 98-point model starts from a 68-point one (backbone copied, heads blended)."""
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from _export_helpers import SMALL  # noqa: E402

from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.model.schemes import WFLW_98  # noqa: E402
from star_track.nn.checkpoint import load_checkpoint, meta_for  # noqa: E402
from star_track.nn.network import StarNet  # noqa: E402
from star_track.nn.onnx_export import export_onnx  # noqa: E402
from train.onnx_weights import network_from_onnx  # noqa: E402
from train.ship98 import fill_unlabelled, head_blend, init_from_68  # noqa: E402


def _shapes(n: int = 5) -> np.ndarray:
    """n jittered copies of a spread-out 98-point layout (outer eye corners 60 / 72 apart)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, (98, 2))
    base[60], base[72] = (30, 40), (70, 40)
    return base + rng.normal(0, 1, (n, 98, 2))


def test_head_blend_copies_shared_points_and_blends_the_others():
    blend = head_blend(_shapes())
    np.testing.assert_allclose(blend.sum(1), 1.0)
    to_68 = list(WFLW_98.to_68)
    for j, i in enumerate(to_68):
        assert blend[i, j] == 1.0 and np.count_nonzero(blend[i]) == 1
    others = [i for i in range(98) if i not in to_68]
    assert len(others) == 30 and all(np.count_nonzero(blend[i]) == 2 for i in others)


def test_init_from_68_keeps_the_backbone_and_blends_the_heads(tmp_path):
    path = export_onnx(StarNet(SMALL).eval(), meta_for(SMALL, "m68"), tmp_path / "m68.onnx")
    crops = synthetic_crops(SMALL.input_size, 4)
    network98 = replace(SMALL, scheme="wflw98")
    blend = torch.from_numpy(head_blend(_shapes())).float()
    net98, _ = load_checkpoint(init_from_68(path, network98, crops, blend.numpy(), tmp_path / "m98.pt"))
    assert net98.config == network98
    s68, s98 = network_from_onnx(path, crops)[0].state_dict(), net98.state_dict()
    heads = ("out_heatmaps", "out_pointmaps", "merge_heatmaps", "merge_pointmaps", "e2h_transform")
    shared = [k for k in s68 if not k.startswith(heads)]
    assert len(shared) > 50 and all(torch.equal(s98[k], s68[k]) for k in shared)  # backbone and edge heads
    merge = s98["merge_heatmaps.0.conv.weight"]  # the second stack reads the channels of the 68 points only
    assert torch.equal(merge[:, list(WFLW_98.to_68)], s68["merge_heatmaps.0.conv.weight"])
    assert not merge[:, [i for i in range(98) if i not in WFLW_98.to_68]].any()
    for key in [k for k in s68 if k.startswith(("out_heatmaps", "out_pointmaps"))]:
        mixed = (blend @ s68[key].reshape(68, -1)).reshape(s98[key].shape)
        assert torch.allclose(s98[key], mixed, atol=1e-6), key
    with torch.no_grad():
        fused = net98(torch.from_numpy(crops.transpose(0, 3, 1, 2)).float())[0][-1]
    assert fused.shape[1] == 98 and torch.isfinite(fused).all()


def test_fill_unlabelled_keeps_the_labels_and_carries_the_other_points_along():
    shapes = _shapes(3)
    blend = head_blend(shapes)
    to_68 = list(WFLW_98.to_68)
    pred = shapes.copy()
    labels = shapes[:, to_68] + np.array([2.0, -1.0])  # every label 2 px right, 1 px up of the prediction
    filled = fill_unlabelled(pred, labels, blend)
    np.testing.assert_allclose(filled[:, to_68], labels)
    others = [i for i in range(98) if i not in to_68]
    np.testing.assert_allclose(filled[:, others] - pred[:, others], np.broadcast_to([2.0, -1.0], (3, 30, 2)))
