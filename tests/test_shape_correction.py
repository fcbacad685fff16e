"""The shape correction: face-frame math, the fit on known distortions, the appended graph, the bundled models."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from export.shape_correction import append_correction, has_shape_correction, verify_correction  # noqa: E402
from star_track.engines.timing import synthetic_crops  # noqa: E402
from star_track.model import BUNDLED_DIR  # noqa: E402
from star_track.model.schemes import W300_68  # noqa: E402
from star_track.nn.checkpoint import meta_for  # noqa: E402
from star_track.nn.network import StarNet  # noqa: E402
from star_track.nn.onnx_export import export_onnx  # noqa: E402
from star_track.nn.shape_correction import ShapeCorrection, face_frame, into_frame  # noqa: E402
from star_track.smoothing.face_model import load_basis  # noqa: E402
from train.shape_correction import apply_correction, fit_correction, offset_only  # noqa: E402

from _export_helpers import SMALL  # noqa: E402

EYES = W300_68.outer_eye_corners


def _similar(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each (N, 2) shape turned, scaled and moved at random."""
    out = []
    for p in points:
        a, s, t = rng.uniform(-0.6, 0.6), rng.uniform(50, 200), rng.uniform(100, 400, 2)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append(p @ rot.T * s + t)
    return np.stack(out)


def _shapes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Plausible 68-point shapes: the mean face with smooth random deformations, in the face frame."""
    mean = load_basis(68)[0]
    base = mean / (mean[45, 0] - mean[36, 0])
    modes = rng.normal(size=(4, 68, 2)) * 0.02
    return base + np.einsum("bk,knd->bnd", rng.normal(size=(n, 4)), modes)


def test_face_frame_puts_the_eyes_level_at_unit_distance_and_is_similarity_invariant():
    rng = np.random.default_rng(0)
    pts = _similar(_shapes(5, rng), rng)
    a = into_frame(torch.from_numpy(pts), face_frame(torch.from_numpy(pts), EYES)).numpy()
    np.testing.assert_allclose(a[:, EYES[1]] - a[:, EYES[0]], np.tile([1.0, 0.0], (5, 1)), atol=1e-12)
    np.testing.assert_allclose(a.mean(1), 0.0, atol=1e-12)
    moved = torch.from_numpy(_similar(a, rng))  # the same shapes placed elsewhere read the same in their frame
    np.testing.assert_allclose(a, into_frame(moved, face_frame(moved, EYES)).numpy(), atol=1e-9)


def test_the_correction_commutes_with_moving_the_face():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(136, 136)) * 0.01, rng.normal(size=136) * 0.01
    m = ShapeCorrection(torch.from_numpy(w), torch.from_numpy(b), EYES)
    shape = _shapes(1, rng)
    moved = _similar(np.repeat(shape, 3, 0), rng)
    with torch.no_grad():
        out = m(torch.from_numpy(moved).float()).numpy()
    # Corrected shapes of the same face placed three ways are the same shape placed the same three ways.
    back = into_frame(torch.from_numpy(out.astype(np.float64)), face_frame(torch.from_numpy(moved), EYES)).numpy()
    np.testing.assert_allclose(back[0], back[1], atol=1e-4)
    np.testing.assert_allclose(back[0], back[2], atol=1e-4)


def test_fit_removes_an_error_that_the_shape_predicts_and_keeps_an_asymmetric_offset():
    rng = np.random.default_rng(2)
    truth = _shapes(600, rng)
    # A systematic error: the jaw slides along x with the face's own asymmetry, plus one offset to the right
    # (as 300W's labels sit right of the mirror-consistent place), plus noise.
    asym = (truth[:, 16, 0] + truth[:, 0, 0])[:, None]
    pred = truth.copy()
    pred[:, :17, 0] += 3.0 * asym
    pred[..., 0] -= 0.01
    pred += rng.normal(size=pred.shape) * 0.003
    truth_px, pred_px = _similar(truth, np.random.default_rng(3)), _similar(pred, np.random.default_rng(3))
    w, b = fit_correction(pred_px[:500], truth_px[:500], W300_68)
    err = lambda p: np.linalg.norm(p - truth_px[500:], axis=-1).mean()  # noqa: E731
    fixed = apply_correction(pred_px[500:], w, b, W300_68)
    assert err(fixed) < 0.5 * err(pred_px[500:]), (err(fixed), err(pred_px[500:]))
    eyes = [c for i in offset_only(W300_68) for c in (2 * i, 2 * i + 1)]
    assert not w[eyes].any() and w[:34].any()  # the eyes move by their offset alone, the jaw by the shape


def test_faces_labelled_in_another_convention_shape_w_but_leave_b_to_the_models_own_labels():
    rng = np.random.default_rng(5)
    truth = _shapes(700, rng)
    pred = truth.copy()
    pred[:, :17, 0] += 3.0 * (truth[:, 16, 0] + truth[:, 0, 0])[:, None]
    pred += rng.normal(size=pred.shape) * 0.003
    other = truth.copy()
    other[..., 1] += 0.05  # another labelling convention: every point 0.05 IOD lower
    other[:, 17:27] = np.nan  # and no brows
    labels = np.concatenate([truth[:10], other[10:600]])
    truth_px, pred_px, labels_px = (_similar(x, np.random.default_rng(6)) for x in (truth, pred, labels))
    shape_only = np.arange(600) >= 10
    w, b = fit_correction(pred_px[:600], labels_px, W300_68, weight=np.where(shape_only, 4.0, 1.0),
                          shape_only=shape_only)
    w_own, b_own = fit_correction(pred_px[:10], labels_px[:10], W300_68)
    assert np.isfinite(w).all() and np.isfinite(b).all()

    def error(weight, bias):  # held-out faces in their own frame: mean |error| and mean signed y error
        fixed = torch.from_numpy(apply_correction(pred_px[600:], weight, bias, W300_68))
        frame = face_frame(torch.from_numpy(truth_px[600:]), EYES)
        d = (into_frame(fixed, frame) - into_frame(torch.from_numpy(truth_px[600:]), frame)).numpy()
        return np.linalg.norm(d, axis=-1).mean(), d[..., 1].mean()

    (err, dy), (err_own, _) = error(w, b), error(w_own, b_own)
    assert err < 0.7 * err_own, (err, err_own)  # the 590 other faces taught W what 10 could not (0.0045 vs 0.0073)
    assert abs(dy) < 0.01  # and their 0.05 offset stayed out of b


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corr")
    src = export_onnx(StarNet(SMALL).eval(), meta_for(SMALL, "m68"), folder / "m68.onnx")
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(136, 136)) * 1e-3, rng.normal(size=136) * 1e-3
    return src, append_correction(src, w, b, EYES, folder / "m68-corrected.onnx"), w, b


def test_appended_graph_equals_the_module_and_keeps_the_covariance(corrected):
    src, out, w, b = corrected
    diffs = verify_correction(out, src, w, b, EYES, synthetic_crops(128, batch=3))
    assert diffs["landmarks"] < 1e-4 and diffs["covariance"] == 0 and diffs["moved"] > 1e-4
    with pytest.raises(ValueError, match="already has a shape correction"):
        append_correction(out, w, b, EYES, out)


@pytest.mark.parametrize("name", ["star68-fast", "star68-accurate", "star68-precise", "star98-fast"])
def test_bundled_models_end_in_a_shape_correction(name):
    assert has_shape_correction(onnx.load(str(BUNDLED_DIR / f"{name}.onnx")))
