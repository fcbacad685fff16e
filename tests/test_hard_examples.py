"""train.hard_examples: repeat the labelled faces a model gets wrong, never the pseudo-labelled ones."""
import numpy as np
import pytest
from conftest import DATA

from train.annotations import FaceAnnotation
from train.hard_examples import oversample_hard


def _face(name: str, split: str = "train") -> FaceAnnotation:
    return FaceAnnotation(name, np.zeros((68, 2), np.float32), None, (), split)


def test_hard_labelled_faces_are_repeated_after_the_originals():
    faces = [_face("easy"), _face("hard"), _face("hard-pseudo", "pseudo"), _face("edge")]
    out = oversample_hard(faces, np.array([0.05, 0.2, 0.3, 0.1]), threshold=0.1, repeat=3)
    assert [f.image for f in out] == ["easy", "hard", "hard-pseudo", "edge", "hard", "hard"]
    assert oversample_hard(faces, np.array([0.05, 0.2, 0.3, 0.1]), 0.1, 1) == faces


def test_mismatched_or_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="3 errors for 1 faces"):
        oversample_hard([_face("a")], np.zeros(3), 0.1, 2)
    with pytest.raises(ValueError, match="repeat"):
        oversample_hard([_face("a")], np.zeros(1), 0.1, 0)


def test_training_errors_measure_the_model_on_each_face(tmp_path):
    """The bundled fast model, rebuilt as a checkpoint: small errors on true labels, large on scrambled ones."""
    pytest.importorskip("torch")
    from star_track.engines.timing import synthetic_crops
    from star_track.model.registry import resolve_model
    from train.hard_examples import training_errors
    from train.onnx_weights import checkpoint_from_onnx
    from train.readers import read_wflw_list

    wflw = DATA / "wflw"
    if not wflw.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    faces = read_wflw_list(wflw / "derived_68pt" / "list_68pt_rect_attr_test.txt", 68)[:6]
    scrambled = faces[0].landmarks[np.random.default_rng(0).permutation(68)]
    faces.append(FaceAnnotation(faces[0].image, scrambled, faces[0].box, (), "train"))
    ckpt = checkpoint_from_onnx(resolve_model("star68-fast"), synthetic_crops(128, 4), tmp_path / "fast.pt")
    errors = training_errors(ckpt, faces, wflw / "WFLW_images")
    assert errors.shape == (7,)
    assert np.median(errors[:6]) < 0.12 and errors[6] > 0.3
