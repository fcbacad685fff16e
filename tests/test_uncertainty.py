"""Calibrated uncertainty: the eigenvalue map, its fit, its storage in the model, the tracker's outputs."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from star_track.io.landmarks import open_landmark_writer, read_landmarks_csv
from star_track.model.meta import ModelMeta
from star_track import Face, Tracker
from star_track.uncertainty import UncalibratedUncertaintyWarning, UncertaintyCalibration, expected_error

from conftest import BUNDLED_MODEL, _export


def _rot(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def test_eigenvalue_map_keeps_direction_and_maps_the_eigenvalues():
    v = _rot(0.7)
    cov = v @ np.diag([0.01, 0.09]) @ v.T
    cal = UncertaintyCalibration(np.full(2, math.log(0.5)), np.full(2, 2.0))
    out = cal.apply(np.stack([cov, np.full((2, 2), np.nan)])[None])[0]
    lam, vec = np.linalg.eigh(out[0])
    np.testing.assert_allclose(lam, 0.5 * np.array([0.01, 0.09]) ** 2, rtol=1e-9)
    assert abs(abs(vec[:, 1] @ v[:, 1]) - 1) < 1e-9  # major axis unchanged
    assert np.isnan(out[1]).all()  # a broken covariance stays visibly broken


def test_closed_form_map_matches_the_eigendecomposition():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 68, 2, 2))
    cov = a @ np.swapaxes(a, -1, -2) * 0.01
    cov[0, 0] = np.eye(2) * 0.02  # round: no eigenvector to pick
    cov[0, 1] = [[1e-14, 0.0], [0.0, -1e-3]]  # eigenvalues under the floor
    cal = UncertaintyCalibration(rng.normal(-2, 0.5, 68), rng.uniform(0.5, 1.5, 68))
    lam, vec = np.linalg.eigh(cov)
    lam = np.exp(cal.log_scale[:, None]) * np.clip(lam, 1e-10, None) ** cal.power[:, None]
    expected = (vec * lam[..., None, :]) @ np.swapaxes(vec, -1, -2)
    np.testing.assert_allclose(cal.apply(cov), expected, rtol=1e-9, atol=1e-15)


def test_identity_when_the_model_has_no_calibration():
    meta = ModelMeta(name="x", scheme="300w68", input_size=64)
    cal = UncertaintyCalibration.from_meta(meta, 68)
    assert not cal.fitted
    cov = np.random.default_rng(0).uniform(0.01, 0.02, (1, 68, 2, 2))
    np.testing.assert_array_equal(cal.apply(cov), cov)


def test_fit_recovers_a_known_map_and_covers_like_a_gaussian():
    pytest.importorskip("scipy")
    from train.uncertainty import fit_group, ideal_coverage

    rng = np.random.default_rng(1)
    lam = rng.uniform(0.005, 0.05, (20000, 2))
    a, b = -1.5, 1.7
    e2 = rng.standard_normal((20000, 2)) ** 2 * np.exp(a) * lam ** b
    fa, fb = fit_group(lam, e2)
    assert abs(fb - b) < 0.1 and abs(fa - a) < 0.4
    d2 = (e2 / (np.exp(fa) * lam ** fb)).sum(1)
    for k in (1, 2, 3):
        assert abs(np.mean(d2 <= k * k) - ideal_coverage(k)) < 0.02


def test_expected_error_of_a_round_gaussian():
    pts = np.zeros((68, 2))
    pts[45] = [10.0, 0.0]  # outer eye corners 10 px apart
    cov = np.tile(np.eye(2) * 4.0, (68, 1, 1))  # sigma 2 px per axis
    assert expected_error(pts, cov, (36, 45)) == pytest.approx(2 * math.sqrt(math.pi / 2) / 10)


def test_calibration_written_to_the_model_is_applied_by_the_tracker(tmp_path, face_photo):
    pytest.importorskip("onnx")
    from train.uncertainty import write_calibration

    img = face_photo[0]
    model = _export(tmp_path, "standin_cal")
    with pytest.warns(UncalibratedUncertaintyWarning):
        with Tracker(model=model) as t:
            raw_faces = t.detect_image(img)
            assert not t.uncertainty_calibrated
    assert raw_faces
    np.testing.assert_allclose(raw_faces[0].covariance, raw_faces[0].star_covariance)
    groups = {"all": list(range(68))}
    write_calibration(model, {"version": 1, "groups": groups, "params": {"all": [math.log(0.25), 1.0]}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncalibratedUncertaintyWarning)
        with Tracker(model=model) as t:
            f = t.detect_image(img)[0]
            assert t.uncertainty_calibrated
    # exp(a) = 1/4 with b = 1: the calibrated covariance is a quarter of the raw one, in frame pixels too
    np.testing.assert_allclose(f.covariance, 0.25 * f.star_covariance, rtol=1e-4, atol=1e-6)
    assert f.expected_error == pytest.approx(0.5 * raw_faces[0].expected_error, rel=1e-3)


def _heldout_300w_face() -> tuple[np.ndarray, np.ndarray]:
    """The largest face among the first held-out 300W photos: (image, its official 68 points). The bundled models
    follow 300W's own labels (the WFLW-derived points of ``face_photo`` sit elsewhere on the jaw and brows)."""
    import cv2

    from conftest import DATA
    from train.prepare import is_w300_validation_image
    from train.readers import read_pts

    root = DATA / "300w"
    pts_files = sorted((root / "afw").glob("*.pts"))
    held = [p for p in pts_files if is_w300_validation_image(str(p.with_suffix(".jpg").relative_to(root)))][:20]
    if not held:
        pytest.skip(f"300W faces not found under {root}")
    best = max(held, key=lambda p: np.ptp(read_pts(p), axis=0).max())
    img = cv2.imread(str(best.with_suffix(".jpg")))
    assert img is not None
    return img, read_pts(best)


@pytest.mark.skipif(not BUNDLED_MODEL.is_file(), reason="bundled model absent")
def test_bundled_model_ellipses_hold_the_true_points():
    img, truth = _heldout_300w_face()
    with Tracker(model=BUNDLED_MODEL) as t:
        assert t.uncertainty_calibrated
        f = t.detect_image(img)[0]
    e = truth - f.raw_landmarks
    d2 = np.einsum("ni,nij,nj->n", e, np.linalg.inv(f.covariance.astype(np.float64)), e)
    assert np.mean(d2 <= 9) > 0.8  # 3-sigma: nominal 99 %; the raw covariance would hold all 68 trivially
    sd_raw = np.sqrt(np.median(f.star_covariance[:, 0, 0]))
    sd_cal = np.sqrt(np.median(f.covariance[:, 0, 0]))
    assert sd_cal < 0.5 * sd_raw
    iod = np.linalg.norm(truth[45] - truth[36])
    actual = np.linalg.norm(e, axis=1).mean() / iod
    assert actual / 3 < f.expected_error < actual * 3


def _face(err: float) -> Face:
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
    cov = np.tile(np.eye(2, dtype=np.float32), (68, 1, 1))
    return Face(0, np.array([0, 0, 100, 100], np.float32), 0.9, pts, pts, cov, cov * 9, expected_error=err)


@pytest.mark.parametrize("ext", [".csv", ".json", ".npz"])
def test_landmark_files_carry_the_expected_error(tmp_path, ext):
    path = tmp_path / f"lm{ext}"
    w = open_landmark_writer(path, 68, "300w68", 30.0)
    w.write(0, 0.0, [_face(0.0425), _face(float("nan"))])
    w.close()
    if ext == ".csv":
        got = read_landmarks_csv(path)["expected_error"]
    elif ext == ".json":
        doc = json.loads(path.read_text())
        assert "calibrated" in doc["covariance_kind"]
        got = [np.nan if f["expected_error"] is None else f["expected_error"] for f in doc["frames"][0]["faces"]]
    else:
        got = np.load(path)["expected_error"]
    np.testing.assert_allclose(got, [0.0425, np.nan], rtol=1e-5)
