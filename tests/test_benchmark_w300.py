"""benchmarks.w300: the convention-offset measure (face frame, inter-ocular units) on synthetic faces."""
import numpy as np
from _synthetic_faces import random_faces

from benchmarks.w300 import (
    GROUPS,
    convention_offsets,
    face_frame_offsets,
    nme_offset_removed,
)


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return random_faces(n, seed)


def test_offsets_are_measured_in_the_face_frame_and_inter_ocular_units():
    gt = _faces(50)
    axis = gt[:, 45] - gt[:, 36]
    iod = np.linalg.norm(axis, axis=-1)
    ux = axis / iod[:, None]
    uy = np.stack([-ux[:, 1], ux[:, 0]], -1)
    pred = gt.copy()
    jaw = list(GROUPS["jaw"])
    pred[:, jaw] += (0.02 * ux + 0.03 * uy)[:, None] * iod[:, None, None]  # jaw: +0.02 IOD along eyes, +0.03 down
    off = face_frame_offsets(pred, gt)
    np.testing.assert_allclose(off[:, jaw], np.broadcast_to([0.02, 0.03], off[:, jaw].shape), atol=1e-9)
    c = convention_offsets(pred, gt)
    assert abs(c["jaw"]["dx"] - 0.02) < 1e-9 and abs(c["jaw"]["dy"] - 0.03) < 1e-9
    assert abs(c["jaw"]["point_offset"] - np.hypot(0.02, 0.03)) < 1e-9
    assert c["mouth"]["point_offset"] < 1e-9 and c["eyes"]["dx"] == 0
    # a systematic offset is removed by the 2-fold per-point correction; the mirrored one cancels in dx only
    assert nme_offset_removed(pred, gt).max() < 1e-9
    pred2 = gt.copy()
    pred2[:, 0] += (0.05 * ux * iod[:, None])
    pred2[:, 16] -= (0.05 * ux * iod[:, None])
    c2 = convention_offsets(pred2, gt)["jaw"]
    assert abs(c2["dx"]) < 1e-9 and abs(c2["point_offset"] - 2 * 0.05 / 17) < 1e-9


def test_region_nme_and_parts_measure_each_region_and_part_on_its_own():
    from benchmarks.w300 import part_summary, region_nme
    from train.annotations import FaceAnnotation

    gt = _faces(40, seed=1)
    iod = np.linalg.norm(gt[:, 45] - gt[:, 36], axis=-1)
    pred = gt.copy()
    pred[:, list(GROUPS["mouth"]), 0] += 0.04 * iod[:, None]  # every mouth point 0.04 IOD off, the rest exact
    r = region_nme(pred, gt)
    assert abs(r["mouth"]["mean"] - 0.04) < 1e-9 and abs(r["mouth"]["median"] - 0.04) < 1e-9
    assert all(r[g]["mean"] < 1e-12 for g in ("jaw", "brows", "nose", "eyes"))
    faces = [FaceAnnotation(f"{p}/{i}.jpg", gt[i], attributes=(p,)) for i, p in
             enumerate(["afw"] * 10 + ["helen"] * 10 + ["lfpw"] * 20)]
    nme_box = np.r_[np.full(10, 0.01), np.full(10, 0.03), np.full(20, 0.05)]
    nme_e2e = nme_box.copy()
    nme_e2e[0] = np.inf  # one AFW face missed
    parts = part_summary(faces, nme_box, nme_e2e)
    assert parts["lfpw"]["faces"] == 20 and abs(parts["lfpw"]["gt_framed"]["nme"] - 0.05) < 1e-12
    assert abs(parts["AFW+HELEN"]["gt_framed"]["nme"] - 0.02) < 1e-12  # the set before LFPW came
    assert parts["afw"]["end_to_end"]["found"] == 9 and parts["AFW+HELEN"]["end_to_end"]["fr@0.1"] == 1 / 20


def test_a_flip_suffix_asks_for_flip_averaging_of_the_named_model():
    from benchmarks.w300 import split_flip

    assert split_flip("star68-precise+flip") == ("star68-precise", True)
    assert split_flip("runs/flip/m.onnx") == ("runs/flip/m.onnx", False)
