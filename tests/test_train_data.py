"""Benchmark readers (real WFLW files, 300W/COFW fixtures), prepare, augmentation and the training dataset."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA
from star_track.crop import LANDMARK_CROP_SCALE
from star_track.model.schemes import COFW_29, W300_68, WFLW_98
from train.annotations import read_annotations
from train.prepare import (
    PartialReleaseError,
    SplitSizeError,
    is_validation_image,
    is_w300_validation_image,
    prepare_300w,
    prepare_shared_wflw68,
)
from train.readers import (
    DatasetFormatError,
    read_300w,
    read_cofw_coco,
    read_pts,
    read_wflw_list,
    read_wflw_subsets,
)

SHARED = DATA
WFLW = SHARED / "wflw"
needs_shared = pytest.mark.skipif(not WFLW.is_dir(), reason=f"shared data not found at {DATA}")


@needs_shared
def test_wflw_subset_files_merge_into_distinct_faces():
    faces = read_wflw_subsets(WFLW / "WFLW_annotations" / "list_98pt_test")
    assert len(faces) == 514  # the data README's count of distinct faces
    assert all(f.landmarks.shape == (98, 2) for f in faces)
    counts = {a: sum(a in f.attributes for f in faces) for a in ("blur", "largepose", "occlusion")}
    assert counts == {"blur": 187, "largepose": 86, "occlusion": 176}  # the lines of each subset file
    assert all((WFLW / "WFLW_images" / f.image).is_file() for f in faces[:20])


@needs_shared
def test_wflw98_to_68_mapping_matches_the_derived_file_except_eyelids():
    """The third-party file puts the 8 eyelid points on chords (e.g. 37 = mean of WFLW 60 and 62); ours are
    WFLW's own lid points, as in 300W. Everything else must agree exactly."""
    faces98 = read_wflw_subsets(WFLW / "WFLW_annotations" / "list_98pt_test")
    faces68 = read_wflw_list(WFLW / "derived_68pt" / "list_68pt_rect_attr_test.txt", 68)
    by_image: dict[str, list[np.ndarray]] = {}
    for f in faces68:
        by_image.setdefault(f.image, []).append(f.landmarks)
    lids = [37, 38, 40, 41, 43, 44, 46, 47]
    same = np.setdiff1d(np.arange(68), lids)
    matched = 0
    for f in faces98:
        reduced = WFLW_98.reduce_to_68(f.landmarks)
        cands = [c for c in by_image.get(f.image, []) if np.abs(c[:17] - reduced[:17]).max() < 0.01]
        if not cands:
            continue
        assert np.abs(cands[0][same] - reduced[same]).max() < 0.01
        assert np.abs(cands[0][37] - (f.landmarks[60] + f.landmarks[62]) / 2).max() < 0.01
        matched += 1
    assert matched == 514


@needs_shared
def test_derived_68_file_has_boxes_and_attributes():
    faces = read_wflw_list(WFLW / "derived_68pt" / "list_68pt_rect_attr_test.txt", 68)
    assert len(faces) == 660
    assert all(f.box is not None and f.box[2] > f.box[0] for f in faces)
    assert any("largepose" in f.attributes for f in faces)


def test_wflw_reader_rejects_wrong_field_count(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(" ".join(["1.0"] * 50) + " a.jpg\n")
    with pytest.raises(DatasetFormatError, match="51 fields"):
        read_wflw_list(bad, 98)


def _write_300w_fixture(root: Path, counts: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for sub, n in counts.items():
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pts = rng.uniform(10, 90, (68, 2))
            cv2.imwrite(str(folder / f"img{i}.jpg"), np.zeros((100, 100, 3), np.uint8))
            body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in pts)  # .pts files are 1-based
            (folder / f"img{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
            np.save(folder / f"img{i}.npy", pts)


def test_300w_reader_and_split_size_check(tmp_path):
    _write_300w_fixture(tmp_path, {"afw": 2, "helen/trainset": 1, "lfpw/trainset": 1, "helen/testset": 1,
                                   "lfpw/testset": 1, "ibug": 2})
    train = read_300w(tmp_path, "train")
    assert len(train) == 4
    first = train[0]
    expected = np.load((tmp_path / first.image).with_suffix(".npy"))
    np.testing.assert_allclose(first.landmarks, expected, atol=1e-3)  # 1-based file -> 0-based pixels
    assert len(read_300w(tmp_path, "full")) == 4
    with pytest.raises(SplitSizeError, match="3148"):
        prepare_300w(tmp_path, tmp_path / "out")
    written = prepare_300w(tmp_path, tmp_path / "out", allow_partial=True)
    assert len(read_annotations(written["challenge"])) == 2


W300 = SHARED / "300w"
REAL_300W = ["afw/1051618982_1", "afw/111076519_1", "helen/trainset/1455826575_1"]
"""Real AFW / HELEN-train faces copied into a partial release for the tests (one of HELEN's held out below)."""


def _copy_real_300w(root: Path, stems: list[str]) -> None:
    import shutil

    for stem in stems:
        (root / stem).parent.mkdir(parents=True, exist_ok=True)
        for ext in (".jpg", ".pts"):
            shutil.copy(W300 / f"{stem}{ext}", root / f"{stem}{ext}")


def _held_out_helen_face() -> str:
    return next(f"helen/trainset/{p.stem}" for p in sorted((W300 / "helen" / "trainset").glob("*.pts"))
                if is_w300_validation_image(f"helen/trainset/{p.stem}.jpg"))


@pytest.mark.skipif(not W300.is_dir(), reason="shared/data/300w not present")
def test_partial_300w_release_on_real_faces(tmp_path):
    root = tmp_path / "300W"  # the root's own name is not part of the hashed path
    stems = REAL_300W + [_held_out_helen_face()]
    _copy_real_300w(root, stems)
    with pytest.raises(PartialReleaseError, match="missing lfpw/trainset, helen/testset, lfpw/testset, ibug"):
        prepare_300w(root, tmp_path / "out")
    lines: list[str] = []
    written = prepare_300w(root, tmp_path / "out", allow_partial=True, log=lines.append)
    report = "\n".join(lines)
    assert "lfpw/trainset" in report and "missing" in report and "afw" in report
    assert "no 300W test split" in report
    assert set(written) == {"300w68_train", "300w68_val"}  # no incomplete official split file
    train, val = read_annotations(written["300w68_train"]), read_annotations(written["300w68_val"])
    assert len(train) + len(val) == 4 and {f.split for f in train} == {"train"} and {f.split for f in val} == {"val"}
    # the split hashes exactly the path train.distill left out: "300w/<path relative to the 300W root>"
    for f in train + val:
        assert is_validation_image(f"300w/{f.image}", 0.15) == (f.split == "val")
    assert f"{stems[-1]}.jpg" in {f.image for f in val}
    # landmarks: the .pts file (1-based) as 0-based pixels, on the image
    face = next(f for f in train + val if f.image == "afw/1051618982_1.jpg")
    np.testing.assert_allclose(face.landmarks, read_pts(W300 / "afw" / "1051618982_1.pts"), atol=1e-3)
    h, w = cv2.imread(str(root / face.image)).shape[:2]
    assert (face.landmarks >= -1).all() and (face.landmarks[:, 0] <= w).all() and (face.landmarks[:, 1] <= h).all()
    assert face.attributes == ("afw",)


@pytest.mark.skipif(not W300.is_dir(), reason="shared/data/300w not present")
def test_prepare_cli_partial_300w(tmp_path):
    from typer.testing import CliRunner

    from train.__main__ import app

    root = tmp_path / "300w"
    _copy_real_300w(root, REAL_300W)
    r = CliRunner().invoke(app, ["prepare", "300w", str(root), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert "partial release: missing lfpw/trainset" in r.output and "--allow-partial" in r.output
    r = CliRunner().invoke(app, ["prepare", "300w", str(root), "--out", str(tmp_path / "out"), "--allow-partial"])
    assert r.exit_code == 0, r.output
    assert "lfpw/trainset" in r.output and "300w68_train:" in r.output and "300w68_val:" in r.output


def test_full_300w_release_also_writes_the_held_out_split(tmp_path):
    _write_300w_fixture(tmp_path, {"afw": 3, "helen/trainset": 3, "lfpw/trainset": 3, "helen/testset": 1,
                                   "lfpw/testset": 1, "ibug": 1})
    written = prepare_300w(tmp_path, tmp_path / "out", allow_partial=True, log=lambda _: None)
    assert {"train", "common", "challenge", "300w68_train", "300w68_val"} <= set(written)
    assert len(read_annotations(written["train"])) == 9  # the official split keeps every training face
    n = sum(len(read_annotations(written[k])) for k in ("300w68_train", "300w68_val"))
    assert n == 9


def test_pts_reader_rejects_count_mismatch(tmp_path):
    p = tmp_path / "x.pts"
    p.write_text("version: 1\nn_points: 68\n{\n1 2\n3 4\n}\n")
    with pytest.raises(DatasetFormatError, match="68"):
        read_pts(p)


def test_cofw_coco_reader_on_real_samples():
    path = SHARED / "samples" / "cofw" / "test_cofw.json"
    if not path.is_file():
        pytest.skip("COFW samples not present")
    faces = read_cofw_coco(path, "test")
    assert len(faces) == 2 and all(f.landmarks.shape == (29, 2) for f in faces)
    for f in faces:
        img = cv2.imread(str(path.parent / f.image))
        assert img is not None
        h, w = img.shape[:2]
        assert (f.landmarks >= 0).all() and (f.landmarks[:, 0] < w).all() and (f.landmarks[:, 1] < h).all()
        # pupils lie between the outer eye corners
        lo, hi = sorted(f.landmarks[list(COFW_29.outer_eye_corners), 0])
        assert lo < f.landmarks[16, 0] < hi and lo < f.landmarks[17, 0] < hi


@needs_shared
def test_shared_split_is_by_image_and_fixed(tmp_path):
    a = prepare_shared_wflw68(WFLW, tmp_path / "a")
    b = prepare_shared_wflw68(WFLW, tmp_path / "b")
    for key in a:
        assert a[key].read_text() == b[key].read_text(), key  # deterministic
    train, val, val_tr = (read_annotations(a[k]) for k in ("train", "val", "val_trainsplit"))
    # every face of the derived test file and of the official train list, each in exactly one file
    assert len(train) + len(val) + len(val_tr) == 660 + 1193
    photos = lambda *sets: {f.image for fs in sets for f in fs}  # noqa: E731
    train98, val98 = read_annotations(a["wflw98_train"]), read_annotations(a["wflw98_val"])
    assert len(train98) + len(val98) == 514 + 1193  # every face with official 98-point labels
    assert not photos(train, train98) & photos(val, val_tr, val98)  # split by photo, in every file
    assert all(f.landmarks.shape == (98, 2) for f in train98 + val98)
    # the held-out WFLW faces every earlier figure was measured on are still exactly the held-out test faces
    old_rule = {f.image for f in read_wflw_list(WFLW / "derived_68pt" / "list_68pt_rect_attr_test.txt", 68)
                if is_validation_image(f"WFLW_images/{f.image}", 0.15)}
    assert {f.image for f in val} == {f"WFLW_images/{i}" for i in old_rule}
    assert len(val) == 96 and {f.extra["wflw_split"] for f in val} == {"test"}
    assert {f.extra["wflw_split"] for f in val_tr} == {"train"} and len(val_tr) > 100
    assert {f.extra["wflw_split"] for f in train} == {"test", "train"}
    # about 15 % of the photos held out (a hash, not a cut in file order)
    n_photos = len(photos(train, val, val_tr))
    assert n_photos == 1125 and 0.10 < len(photos(val, val_tr)) / n_photos < 0.20


@needs_shared
def test_wflw_official_train_list_reader_on_real_files():
    from train.prepare import WFLW_TRAIN_LIST, read_shared_wflw_train

    lines = (WFLW / WFLW_TRAIN_LIST).read_text().split("\n")
    assert len(lines[0].split()) == 196 + 4 + 6 + 1  # the official line layout
    faces = read_shared_wflw_train(WFLW)
    assert len(faces) == 1193 and len({f.image for f in faces}) == 807  # the data README's counts
    assert all(f.image.startswith("WFLW_images/") and f.split == "train" for f in faces)
    first = [float(v) for v in lines[0].split()[:196]]
    np.testing.assert_allclose(faces[0].landmarks.ravel(), first, atol=1e-3)  # x0 y0 x1 y1 ..., not x then y
    inside = pupils = 0
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert x1 < x2 and y1 < y2
        pts = f.landmarks
        inside += np.mean((pts[:, 0] >= x1 - 5) & (pts[:, 0] <= x2 + 5) & (pts[:, 1] >= y1 - 5) & (pts[:, 1] <= y2 + 5))
        lo, hi = sorted(pts[list(WFLW_98.outer_eye_corners), 0])
        pupils += lo < pts[96, 0] < hi and lo < pts[97, 0] < hi  # pupils between the outer eye corners
    assert inside / len(faces) > 0.95  # the box is x_min y_min x_max y_max of this face
    assert pupils / len(faces) > 0.95  # points 96/97 are the pupils (profiles may break it)
    img = cv2.imread(str(WFLW / faces[0].image))
    assert img is not None and (faces[0].landmarks.max(0) < img.shape[1::-1]).all()


@needs_shared
def test_wflw_train_list_reader_rejects_a_missing_photo(tmp_path):
    from train.prepare import WFLW_TRAIN_LIST, read_shared_wflw_train

    line = (WFLW / WFLW_TRAIN_LIST).read_text().split("\n")[0]
    (tmp_path / WFLW_TRAIN_LIST).parent.mkdir(parents=True)
    (tmp_path / WFLW_TRAIN_LIST).write_text(line + "\n")
    with pytest.raises(FileNotFoundError, match="1 WFLW training images missing"):
        read_shared_wflw_train(tmp_path)


@needs_shared
def test_300w_lfpw_trainset_reader_and_split_on_real_files(tmp_path):
    root = SHARED / "300w"
    faces = read_300w(root, "train", skip_missing=True)
    lfpw = [f for f in faces if f.attributes == ("lfpw",)]
    assert len(lfpw) == 805 and all(f.image.startswith("lfpw/trainset/") for f in lfpw)
    for f in lfpw[::80]:
        img = cv2.imread(str(root / f.image))
        h, w = img.shape[:2]
        assert (f.landmarks > -1).all() and (f.landmarks[:, 0] < w).all() and (f.landmarks[:, 1] < h).all()
        assert f.landmarks[36, 0] < f.landmarks[45, 0] and f.landmarks[8, 1] > f.landmarks[30, 1]  # upright
    written = prepare_300w(root, tmp_path, allow_partial=True, log=lambda _: None)
    train, val = read_annotations(written["300w68_train"]), read_annotations(written["300w68_val"])
    assert len(train) + len(val) == 2012 and not ({f.image for f in train} & {f.image for f in val})
    held = {sub: sum(f.attributes == (sub,) for f in val) for sub in ("afw", "helen", "lfpw")}
    assert held["afw"] + held["helen"] == 165  # the AFW/HELEN faces held out before LFPW came stay held out
    assert held["lfpw"] > 60  # and LFPW joined the held-out set by the same rule


def test_distillation_hashes_300w_photos_by_their_split_key():
    from train.distill import SOURCES, _relative_to_300w
    from train.prepare import w300_split_key

    assert "wflw_unlabeled" not in SOURCES
    assert w300_split_key(_relative_to_300w("../300w/lfpw/trainset/image_0001.jpg")) == \
        "300w/lfpw/trainset/image_0001.jpg"
    with pytest.raises(ValueError, match="not a 300W photo"):
        _relative_to_300w("WFLW_images/0--Parade/x.jpg")


@needs_shared
def test_dataset_crops_keep_landmarks_on_the_face_and_flip_pairs(tmp_path):
    torch = pytest.importorskip("torch")
    from train.augment import AugmentConfig
    from train.dataset import FaceCropDataset, crop_to_frame

    faces = read_wflw_list(WFLW / "derived_68pt" / "list_68pt_rect_attr_test.txt", 68)[:6]
    ev = FaceCropDataset(faces, WFLW / "WFLW_images", W300_68, 128, None)
    item = ev[0]
    back = crop_to_frame(item["landmarks"].numpy()[None], item["to_crop"].numpy()[None], 128)[0]
    np.testing.assert_allclose(back, faces[0].landmarks, atol=0.05)
    assert item["pointmaps"].shape == (68, 32, 32) and item["edgemaps"].shape == (9, 32, 32)
    # point-map peaks sit where the targets are (to within a heatmap pixel)
    hm = item["pointmaps"].numpy()
    peak = np.stack(np.unravel_index(hm.reshape(68, -1).argmax(1), (32, 32)), 1)[:, ::-1]
    expect = (item["landmarks"].numpy() + 1) * 16 - 0.5
    inside = (np.abs(item["landmarks"].numpy()) < 0.95).all(1)
    assert np.abs(peak - expect)[inside].max() <= 1.0

    aug = FaceCropDataset(faces, WFLW / "WFLW_images", W300_68, 128, AugmentConfig(flip=1.0), seed=3)
    a1, a2 = aug[1], aug[1]
    assert torch.equal(a1["image"], a2["image"])  # reproducible from (seed, epoch, index)
    aug.set_epoch(1)
    assert not torch.equal(aug[1]["image"], a1["image"])
    # after a flip, the image-left outer eye corner (index 36) is still left of 45
    lm = a1["landmarks"].numpy()
    assert lm[36, 0] < lm[45, 0] and lm[0, 0] < lm[16, 0]


def test_cofw_mat_reader_on_a_fixture(tmp_path):
    """The .mat release layout (MATLAB v5 here; v7.3 files go through h5py): images, phis (x, y, occlusion)."""
    savemat = pytest.importorskip("scipy.io").savemat
    from train.readers import read_cofw_mat

    rng = np.random.default_rng(0)
    images = np.empty((2, 1), dtype=object)
    images[0, 0] = rng.integers(0, 255, (60, 80), dtype=np.uint8)  # grayscale
    images[1, 0] = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)  # colour (RGB in the file)
    pts = rng.uniform(10, 50, (2, 29, 2))
    occl = np.zeros((2, 29))
    occl[1, 5] = 1
    phis = np.concatenate([pts[:, :, 0] + 1, pts[:, :, 1] + 1, occl], 1)  # 1-based in the file
    savemat(tmp_path / "COFW_test_color.mat", {"IsT": images, "phisT": phis,
                                               "bboxesT": np.array([[5, 6, 40, 40], [7, 8, 50, 50]])})
    faces = read_cofw_mat(tmp_path / "COFW_test_color.mat", "test", tmp_path / "imgs")
    assert len(faces) == 2
    np.testing.assert_allclose(faces[1].landmarks, pts[1], atol=1e-4)
    assert faces[1].attributes == ("occluded_5",) and faces[0].attributes == ()
    assert faces[0].box == (4.0, 5.0, 44.0, 45.0)
    colour = cv2.imread(str(tmp_path / faces[1].image))
    np.testing.assert_array_equal(colour[..., ::-1], images[1, 0])  # written as BGR


def test_flip_mirrors_about_the_labels_own_axis(tmp_path):
    """A source whose labels sit ``c`` px right of the content keeps that offset on flipped crops when the face
    says so (``extra["mirror_shift"]``); a plain flip would turn it into ``-c``."""
    pytest.importorskip("torch")
    from train.annotations import FaceAnnotation
    from train.augment import AugmentConfig
    from train.dataset import FaceCropDataset

    rng = np.random.default_rng(0)
    content = rng.uniform(150, 250, (68, 2))
    content[30] = (200.0, 210.0)  # the nose tip (its own mirror partner) is a bright blob in the photo
    yy, xx = np.mgrid[0:400, 0:400]
    blob = np.exp(-((xx - 200.0) ** 2 + (yy - 210.0) ** 2) / (2 * 3.0**2))
    img = np.repeat((20 + 230 * blob)[..., None], 3, -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "face.png"), img)
    c = 2.0
    labels = (content + [c, 0.0]).astype(np.float32)
    still = AugmentConfig(flip=1.0, shift_sd=0, rotate_sd_deg=0, scale_sd=0, occlusion=0, blur=0, gamma=0,
                          noise=0, gray=0, jitter=0)

    def label_minus_blob(shift: float) -> float:
        """Point 30's target minus the blob centre on the flipped crop, in photo pixels."""
        face = FaceAnnotation("face.png", labels, extra={"mirror_shift": shift})
        item = FaceCropDataset([face], tmp_path, W300_68, 128, still, with_targets=False)[0]
        crop = item["image"].numpy()[0].astype(np.float64) - 20
        w = np.clip(crop, 0, None) ** 2
        blob_x = float((w * np.arange(128)[None, :]).sum() / w.sum())
        target_x = (float(item["landmarks"][30, 0]) + 1) * 64 - 0.5
        k = 128 / (np.ptp(labels, axis=0).max() * LANDMARK_CROP_SCALE)  # crop pixels per photo pixel
        return (target_x - blob_x) / k

    assert label_minus_blob(0.0) == pytest.approx(-c, abs=0.3)  # a plain flip inverts the label offset
    assert label_minus_blob(c) == pytest.approx(c, abs=0.3)  # mirrored about the labels' own axis: kept


def test_a_lossless_pack_gives_the_training_samples_of_the_photos(tmp_path):
    """``train.pack``: a face's patch and labels moved into it yield the same crops and targets, plain and
    flipped with a mirror shift (which is in image pixels and must scale with the patch)."""
    pytest.importorskip("torch")
    from train.annotations import FaceAnnotation
    from train.augment import AugmentConfig
    from train.dataset import FaceCropDataset
    from train.pack import pack_faces

    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (5, 5), 0)
    cv2.imwrite(str(tmp_path / "photo.png"), img)
    faces = [FaceAnnotation("photo.png", (rng.uniform(0, 1, (68, 2)) * s + o).astype(np.float32),
                            extra={"mirror_shift": 1.5}) for s, o in ((90, (150, 120)), (200, (300, 200)))]
    packed = read_annotations(pack_faces(faces, tmp_path, tmp_path / "pack", "faces", 256, quality=101))
    assert [f.image for f in packed] == ["faces/00000.webp", "faces/00001.webp"]
    flip = AugmentConfig(flip=1.0, shift_sd=0, rotate_sd_deg=0, scale_sd=0, occlusion=0, blur=0, gamma=0,
                         noise=0, gray=0, jitter=0)
    for augment in (None, flip):
        a = FaceCropDataset(faces, tmp_path, W300_68, 128, augment, seed=2, with_targets=False)
        b = FaceCropDataset(packed, tmp_path / "pack", W300_68, 128, augment, seed=2, with_targets=False)
        for i in range(2):
            np.testing.assert_allclose(a[i]["landmarks"].numpy(), b[i]["landmarks"].numpy(), atol=1e-4)
            diff = np.abs(a[i]["image"].numpy().astype(float) - b[i]["image"].numpy().astype(float))
            assert diff.mean() < 0.5, diff.mean()


def _train_cli(monkeypatch, capfd, *args):
    """``python -m train ARGS`` through its entry point (usage errors and Ctrl-C are handled there); capfd also
    catches native libraries' lines on stderr. Returns (exit code, stdout, stderr)."""
    import sys

    from train.__main__ import main

    monkeypatch.setattr(sys, "argv", ["python -m train", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capfd.readouterr()
    return e.value.code, out, err


def test_pack_cli_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capfd):
    """Usage errors (a quality out of 0..101), a missing photo, a broken annotation file and two files that would
    be packed to the same place: one ``python -m train: error:`` line each, exit 2, nothing packed for the last;
    Ctrl-C: the resume hint, exit 130."""
    pytest.importorskip("torch")
    import train.pack
    from train.annotations import FaceAnnotation, write_annotations

    cv2.imwrite(str(tmp_path / "photo.png"), np.full((240, 320, 3), 128, np.uint8))
    pts = (np.random.default_rng(0).uniform(0, 1, (68, 2)) * 80 + 100).astype(np.float32)
    good = write_annotations([FaceAnnotation("photo.png", pts)], tmp_path / "a" / "faces.jsonl")
    gone = write_annotations([FaceAnnotation("gone.png", pts)], tmp_path / "gone.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good.read_text() + '{"image": "photo.png"}\n')
    twin = write_annotations([FaceAnnotation("photo.png", pts)], tmp_path / "b" / "faces.jsonl")
    out = tmp_path / "pack"

    def one_error_line(args, *needles):
        code, stdout, stderr = _train_cli(monkeypatch, capfd, "pack", *args, "--image-root", tmp_path, "--out", out)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("python -m train: error: "), (code, stderr)
        assert all(n in lines[0] for n in needles), lines[0]

    one_error_line([good, "--quality", 102], "--quality")
    one_error_line([good, "--quality", -1], "--quality")
    one_error_line([good, twin], "same stem", "faces")
    one_error_line([broken], "broken.jsonl line 2", "landmarks")
    assert not out.exists()
    one_error_line([gone], "image not found", "gone.png")
    assert not any(out.iterdir())  # no partial pack left behind
    assert _train_cli(monkeypatch, capfd, "pack", good, "--image-root", tmp_path, "--out", out,
                      "--quality", 101)[0] == 0
    assert len(read_annotations(out / "faces.jsonl")) == 1
    (out / "faces" / "00007.webp").write_bytes(b"left from a larger pack")
    assert _train_cli(monkeypatch, capfd, "pack", good, "--image-root", tmp_path, "--out", out)[0] == 0
    assert [f.name for f in (out / "faces").iterdir()] == ["00000.webp"]  # a re-pack replaces the last one

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.pack, "pack_files", interrupted)
    code, _, stderr = _train_cli(monkeypatch, capfd, "pack", good, "--image-root", tmp_path, "--out", out)
    assert code == 130 and "interrupted; resume with the same command" in stderr, (code, stderr)
