"""Flip averaging (FlipAveragedEngine), pseudo-labelling real photos, and fine-tuning init."""
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from star_track.model.meta import ModelMeta
from star_track.model.schemes import get_scheme
from star_track.engines.flip_average import FlipAveragedEngine
from train.pseudo_label import pseudo_label

SCHEME = get_scheme("300w68")


def _mirror_symmetric_offsets(rng) -> np.ndarray:
    """Per-landmark offsets of a face that is its own mirror image (pairs mirrored, midline points at x=0)."""
    o = np.zeros((SCHEME.num_points, 2), np.float32)
    o[:, 1] = rng.uniform(-0.5, 0.5, SCHEME.num_points)
    for a, b in SCHEME.flip_pairs:
        o[a, 0] = rng.uniform(0.05, 0.5)
        o[b] = (-o[a, 0], o[a, 1])
    return o


class DotEngine:
    """Fake engine: landmark i = (brightest pixel in [-1, 1] crop units) + offset i."""

    def __init__(self, offsets: np.ndarray, size: int = 32):
        self.offsets = offsets
        self.name = "dot"
        self.meta = ModelMeta("dot", "300w68", size)

    def infer(self, crops):
        means = []
        for crop in crops:
            y, x = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
            dot = (np.array([x, y], np.float32) * 2 + 1) / crop.shape[0] - 1
            means.append(dot + self.offsets)
        means = np.stack(means).astype(np.float32)
        covs = np.zeros((*means.shape, 2), np.float32)
        covs[..., 0, 0], covs[..., 1, 1] = 0.01, 0.02
        covs[..., 0, 1] = covs[..., 1, 0] = 0.005 * np.sign(self.offsets[:, 0])  # 0 on the midline, as symmetry demands
        return means, covs


def _dot_crops(size: int = 32) -> np.ndarray:
    crops = np.zeros((3, size, size, 3), np.uint8)
    for k, (x, y) in enumerate([(3, 20), (16, 16), (29, 5)]):
        crops[k, y, x] = 255
    return crops


def test_flip_average_of_a_mirror_consistent_model_is_its_plain_output():
    engine = DotEngine(_mirror_symmetric_offsets(np.random.default_rng(0)))
    crops = _dot_crops()
    plain, cov = engine.infer(crops)
    means, covs = FlipAveragedEngine(engine).infer(crops)
    np.testing.assert_allclose(means, plain, atol=1e-6)
    # Mirroring flips the sign of the x-y correlation; the mirrored partner's covariance maps back onto it.
    np.testing.assert_allclose(covs, cov, atol=1e-7)


def test_flip_average_cancels_a_left_right_bias():
    # A model that adds the same +x shift to every point sees it mirrored in the flipped crop: averaging
    # removes it, leaving the mirror-consistent part.
    offsets = _mirror_symmetric_offsets(np.random.default_rng(1))
    crops = _dot_crops()
    truth, _ = DotEngine(offsets).infer(crops)
    biased = DotEngine(offsets + np.array([0.1, 0.0], np.float32))
    np.testing.assert_allclose(FlipAveragedEngine(biased).infer(crops)[0], truth, atol=1e-6)


def test_flip_average_keeps_the_mirror_shift_the_model_learned():
    # A model trained on labels that sit ``s`` outer-eye distances right of the mirror-consistent position puts
    # every point there on any crop, mirrored or not; with meta.mirror_shift = s averaging keeps its output.
    from dataclasses import replace

    offsets = _mirror_symmetric_offsets(np.random.default_rng(2))
    crops = _dot_crops()
    plain_engine = DotEngine(offsets)
    iod = float(np.linalg.norm(offsets[36] - offsets[45]))
    s = 0.01
    shifted = DotEngine(offsets + np.array([s * iod, 0.0], np.float32))
    shifted.meta = replace(shifted.meta, mirror_shift=s)
    plain, _ = shifted.infer(crops)
    np.testing.assert_allclose(FlipAveragedEngine(shifted).infer(crops)[0], plain, atol=1e-6)
    # without the metadata the shift is averaged away (the mirror-consistent points)
    no_meta = DotEngine(offsets + np.array([s * iod, 0.0], np.float32))
    np.testing.assert_allclose(FlipAveragedEngine(no_meta).infer(crops)[0], plain_engine.infer(crops)[0], atol=1e-6)


def test_pseudo_labels_on_a_real_photo_sit_on_the_face(tmp_path, face_photo):
    img, gt, _ = face_photo
    photos = tmp_path / "unlabeled" / "event"
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / "face.jpg"), img)
    faces = pseudo_label("default", tmp_path / "unlabeled", relative_to=tmp_path / "root", progress=False)
    assert len(faces) >= 1
    iod = np.linalg.norm(gt[36] - gt[45])
    nme = min(np.linalg.norm(f.landmarks - gt, axis=1).mean() / iod for f in faces)
    assert nme < 0.1
    assert faces[0].image == str(Path("..") / "unlabeled" / "event" / "face.jpg")
    assert faces[0].split == "pseudo" and faces[0].extra["teacher_score"] >= 0.7


def test_init_weights_start_a_run_from_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from star_track.nn.network import StarNet
    from train.config import PRESETS
    from train.trainer import _initial_weights

    cfg = PRESETS["tiny-cpu"]
    net = StarNet(cfg.network)
    torch.save({"model": net.state_dict(), "config": cfg.network.to_dict()}, tmp_path / "a.pt")
    weights = _initial_weights(replace(cfg, init_weights=str(tmp_path / "a.pt")))
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    other = replace(cfg, network=replace(cfg.network, channels=64), init_weights=str(tmp_path / "a.pt"))
    with pytest.raises(ValueError, match="does not match"):
        _initial_weights(other)
