"""The 98-point WFLW benchmark's pure parts: regions, reduction to 68, photo-mode matching and misses, subsets."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import common, wflw98
from star_track.model.schemes import WFLW_98
from train.annotations import FaceAnnotation


def _faces98(n: int, seed: int = 0) -> np.ndarray:
    """(n, 98, 2) random points with the outer eye corners (60, 72) 40 px apart."""
    pts = np.random.default_rng(seed).uniform(0, 100, (n, 98, 2))
    pts[:, 60], pts[:, 72] = (30.0, 40.0), (70.0, 40.0)
    return pts


def test_regions98_partition_the_98_points_as_the_scheme_does():
    flat = [i for r in wflw98.REGIONS98.values() for i in r]
    assert sorted(flat) == list(range(98))
    edges = {e.name: set(e.points) for e in WFLW_98.edges}
    assert set(wflw98.REGIONS98["contour"]) == edges["contour"]
    assert set(wflw98.REGIONS98["brows"]) == edges["brow_a"] | edges["brow_b"]
    assert set(wflw98.REGIONS98["eyes"]) == edges["eye_a"] | edges["eye_b"]
    assert set(wflw98.REGIONS98["mouth"]) == edges["lip_outer"] | edges["lip_inner"]
    assert set(wflw98.REGIONS98["pupils"]) == set(WFLW_98.pupils)


def test_region_nme_sees_an_error_only_in_its_region():
    gt = _faces98(5)
    pred = gt.copy()
    pred[:, 76:96, 0] += 4.0  # every mouth point 4 px off: 0.1 of the 40 px outer-eye distance
    reg = wflw98.region_nme(pred, gt, WFLW_98, wflw98.REGIONS98)
    assert reg["mouth"]["mean"] == pytest.approx(0.1) and reg["mouth"]["median"] == pytest.approx(0.1)
    assert all(reg[r]["mean"] == 0 for r in reg if r != "mouth")


def test_to_68_reduces_labels_and_leaves_the_faces_alone():
    pts = np.arange(196, dtype=np.float64).reshape(98, 2)
    face = FaceAnnotation("a.jpg", pts, extra={"wflw_split": "test"})
    (f68,) = wflw98.to_68([face])
    assert f68.landmarks.shape == (68, 2) and face.landmarks.shape == (98, 2)
    np.testing.assert_array_equal(f68.landmarks[:, 0] / 2, WFLW_98.to_68)
    assert f68.extra == {"wflw_split": "test"} and f68.image == "a.jpg"


def test_match_photo_picks_the_nearest_face_inside_and_marks_misses():
    a = np.array([[10.0, 10.0], [30.0, 30.0]])  # landmark box 10-30, centre 20
    b = np.array([[100.0, 100.0], [120.0, 120.0]])  # nobody returned near it
    boxes = np.array([[0, 0, 50, 50], [12, 12, 26, 26], [200, 200, 260, 260]], np.float64)  # centres 25, 19, 230
    points = [np.full((2, 2), k, np.float64) for k in range(3)]
    preds, matched, found = common.match_photo([a, b], boxes, points, 2)
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(preds[0], points[1])
    np.testing.assert_array_equal(matched[0], boxes[1])
    assert np.isnan(preds[1]).all() and np.isnan(matched[1]).all()
    _, _, none = common.match_photo([a], np.zeros((0, 4)), [], 2)
    assert not none.any()


def test_a_missed_face_is_a_failure_but_not_in_the_mean():
    gt = _faces98(4)
    pred = gt.copy()
    pred[1] += 2.0  # NME 2 * sqrt(2) / 40
    found = np.array([True, True, True, False])
    nme = wflw98.per_face_nme(pred, gt, found, WFLW_98)
    assert np.isinf(nme[3]) and nme[1] == pytest.approx(2 * np.sqrt(2) / 40)
    s = wflw98.scores(nme)
    assert s["found"] == 3 and s["count"] == 4 and s["fr@0.1"] == pytest.approx(0.25)
    assert s["nme"] == pytest.approx(nme[:3].mean()) and s["median_nme"] == pytest.approx(0.0)
    assert s["auc@0.1"] < 0.75


def test_subsets_and_evaluate_keep_the_wflw_splits_apart():
    gt = _faces98(8)
    faces = [FaceAnnotation("x.jpg", g, extra={"wflw_split": "test" if i < 4 else "train"}) for i, g in enumerate(gt)]
    masks = wflw98.subset_masks(faces)
    assert [int(m.sum()) for m in masks.values()] == [4, 4, 8]
    assert list(wflw98.subset_masks(faces[:4])) == ["test", "all"]  # an empty split is left out
    pred = gt.copy()
    pred[4:] += 1.0  # only the train-split faces are off
    res = wflw98.evaluate(pred, np.ones(8, bool), gt, masks)
    assert res["test"]["98"]["nme"] == 0 and res["test"]["68"]["nme"] == 0
    assert res["train"]["98"]["nme"] > 0 and res["train"]["68"]["nme"] > 0
    assert res["all"]["98"]["regions"]["pupils"]["mean"] > 0
    # A constant offset is exactly what "offset removed" takes away.
    assert res["train"]["68"]["offset_removed_nme"] == pytest.approx(0, abs=1e-12)
    assert res["train"]["68"]["convention_offset"]["all"]["point_offset"] == pytest.approx(np.sqrt(2) / 40)
    assert res["test"]["68"]["convention_offset"]["all"]["point_offset"] == 0
    res68 = wflw98.evaluate(WFLW_98.reduce_to_68(pred), np.ones(8, bool), gt, masks)
    assert "98" not in res68["all"] and res68["all"]["68"]["nme"] == pytest.approx(res["all"]["68"]["nme"])


def test_resolve_finds_a_candidate_before_it_is_bundled(tmp_path, monkeypatch):
    monkeypatch.setattr(wflw98, "CANDIDATES", tmp_path)
    (tmp_path / "star98-test-only.onnx").write_bytes(b"")
    assert wflw98.resolve("star98-test-only") == tmp_path / "star98-test-only.onnx"
    with pytest.raises(SystemExit, match="no model named"):
        wflw98.resolve("no-such-model-anywhere")
