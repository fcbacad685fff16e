"""train.conventions: the WFLW -> 300W per-point correction, on synthetic faces with a known convention shift."""
import numpy as np
from _synthetic_faces import random_faces
import pytest

from train.conventions import (
    GROUPS,
    SCHEME,
    apply_correction,
    face_frame_offsets,
    fit_correction,
    from_face_frame,
    symmetrize,
    to_face_frame,
)


def _faces(n: int, seed: int) -> np.ndarray:
    return random_faces(n, seed, noise=0.03)


def _symmetric_shift() -> np.ndarray:
    """A convention shift that is a mirror image of itself: jaw 0.04 IOD down, brows 0.02 outwards."""
    shift = np.zeros((68, 2))
    shift[list(GROUPS["jaw"]), 1] = 0.04
    shift[17:22, 0], shift[22:27, 0] = -0.02, 0.02
    return shift


def test_face_frame_round_trip_and_units():
    gt = _faces(20, 0)
    d = np.random.default_rng(1).normal(0, 3, gt.shape)
    np.testing.assert_allclose(from_face_frame(to_face_frame(d, gt), gt), d, atol=1e-9)
    iod = np.linalg.norm(gt[:, 45] - gt[:, 36], axis=-1)
    shifted = gt.copy()
    shifted[:, 45] += (gt[:, 45] - gt[:, 36]) * 0.1  # 0.1 IOD along the eye axis
    np.testing.assert_allclose(face_frame_offsets(shifted, gt)[:, 45], np.tile([0.1, 0.0], (20, 1)), atol=1e-9)
    assert iod.min() > 0


def test_symmetrize_keeps_mirror_symmetric_offsets_and_removes_a_uniform_sideways_bias():
    shift = _symmetric_shift()
    np.testing.assert_allclose(symmetrize(shift), shift, atol=1e-12)
    sideways = np.tile([0.01, 0.0], (68, 1))
    np.testing.assert_allclose(symmetrize(sideways), 0.0, atol=1e-12)
    perm = SCHEME.flip_permutation()
    assert (perm[perm] == np.arange(68)).all()


def test_fit_recovers_the_convention_shift_and_cancels_the_models_own_bias():
    shift = _symmetric_shift()
    wflw, faces300 = _faces(300, 2), _faces(300, 3)
    gt300 = faces300 + from_face_frame(shift, faces300)  # 300W puts the points elsewhere
    bias = np.zeros((68, 2))
    bias[:, 0] = -0.01  # the model leans left on every point...
    bias[30] = (0.0, 0.02)  # ...and puts the nose tip low, on both sources
    rng = np.random.default_rng(4)
    pred_wflw = wflw + from_face_frame(bias, wflw) + rng.normal(0, 0.5, wflw.shape)
    pred300 = faces300 + from_face_frame(bias, faces300) + rng.normal(0, 0.5, faces300.shape)
    corr = fit_correction(pred300, gt300, pred_wflw, wflw)
    np.testing.assert_allclose(corr, shift, atol=0.004)
    moved = apply_correction(wflw, corr)
    err = np.abs(face_frame_offsets(moved, wflw + from_face_frame(shift, wflw))).max()
    assert err < 0.005
    assert apply_correction(wflw[0], corr).shape == (68, 2)


def test_teacher_labels_adopt_the_mirror_convention_in_face_units(tmp_path):
    import json

    from train.annotations import FaceAnnotation
    from train.combined import adopt_mirror_convention

    (tmp_path / "c.json").write_text(json.dumps({"mirror_shift_iod": {"300w": 0.01, "wflw": 0.002, "teacher": 0}}))
    faces = [FaceAnnotation(f"{i}.jpg", pts.astype(np.float32), extra={"source": "video_frames"})
             for i, pts in enumerate(_faces(3, 5))]
    moved = adopt_mirror_convention(faces, tmp_path / "c.json")
    for f, m in zip(faces, moved):
        iod = SCHEME.inter_ocular(f.landmarks.astype(np.float64))
        np.testing.assert_allclose(m.landmarks - f.landmarks, np.tile([0.01 * iod, 0.0], (68, 1)), atol=1e-3)
        assert m.extra["mirror_shift"] == pytest.approx(0.01 * iod, abs=1e-3)
        assert m.extra["source"] == "video_frames" and m.image == f.image
