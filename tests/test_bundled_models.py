"""Every bundled model carries a card that matches its metadata and its calibrations; the 98-point model works."""
import numpy as np
import pytest

from star_track import Tracker
from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
from star_track.model import BUNDLED_DIR
from star_track.model.schemes import W300_68, WFLW_98, get_scheme
from star_track.uncertainty import UncertaintyCalibration


@pytest.mark.parametrize("path", sorted(BUNDLED_DIR.glob("*.onnx")), ids=lambda p: p.stem)
def test_bundled_model_has_a_matching_card_and_its_calibrations(path):
    meta = OnnxRuntimeEngine(path).meta
    n = get_scheme(meta.scheme).num_points
    card = path.with_suffix(".md").read_text()
    assert meta.name == path.stem and card.startswith(f"# {path.stem} ")
    assert f"(`{meta.scheme}`)" in card and f"landmarks (B,{n},2)" in card
    assert {"full", "short"} <= set(meta.box_calibrations)
    assert UncertaintyCalibration.from_meta(meta, n).fitted


def test_the_98_point_model_puts_its_points_on_a_real_face(face_photo):
    img, truth68, _ = face_photo
    with Tracker(model="star98-fast", smoothing="none", output_scheme="98") as tr:
        faces = tr.track(img)
    assert len(faces) == 1
    pts = faces[0].landmarks
    assert pts.shape == (98, 2) and faces[0].covariance.shape == (98, 2, 2)
    implied = WFLW_98.reduce_to_68(pts)
    assert np.linalg.norm(implied - truth68, axis=1).mean() / W300_68.inter_ocular(truth68) < 0.08
    for pupil, eye in zip(WFLW_98.pupils, WFLW_98.eyes):  # each pupil inside its eye's outline box
        lo, hi = pts[list(eye)].min(0), pts[list(eye)].max(0)
        assert np.all(pts[pupil] > lo) and np.all(pts[pupil] < hi), (pupil, pts[pupil], lo, hi)
