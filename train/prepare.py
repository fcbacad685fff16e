"""``prepare``: read a benchmark in its own layout and write our annotation files (JSON Lines).

Counts are checked against the published split sizes; a mismatch is an error unless ``allow_partial``.

**The fixed held-out split of our own models** (by photo, never trained, distilled or pseudo-labelled on): a
photo is held out when the first 8 hex digits of the SHA-1 of its key, modulo 10,000, are below 1,500 (15 %,
:func:`is_validation_image`). Keys: ``WFLW_images/<event>/<name>.jpg`` for WFLW photos (:func:`wflw_split_key`;
test-split and train-split faces share photos, so the photo decides for all its faces) and ``300w/<path>`` for
300W photos (:func:`w300_split_key`). The rule predates the WFLW train labels and LFPW: the faces held out before
(96 WFLW test faces, 165 AFW/HELEN faces) are held out still; the new faces on held-out photos (201 WFLW
train-split faces, 121 LFPW faces in ``shared/data``) joined them. In ``shared/data``: WFLW 171 of 1,125 photos
held out (96 test-split + 201 train-split faces held out; 564 + 992 for training); 300W 286 of 2,012 faces held
out (AFW 50, HELEN 115, LFPW 121; 1,726 for training).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .annotations import FaceAnnotation, write_annotations
from .readers import (
    W300_PART_SIZES,
    W300_SIZES,
    W300_SPLITS,
    read_300w,
    read_cofw_coco,
    read_cofw_mat,
    read_wflw_list,
    w300_part_counts,
)

WFLW_SIZES = {"train": 7500, "test": 2500}
COFW_SIZES = {"train": 1345, "test": 507}


class SplitSizeError(ValueError):
    """A split does not have its published number of faces (incomplete or wrong dataset folder)."""


def _check(name: str, split: str, n: int, expected: int, allow_partial: bool) -> None:
    if n != expected and not allow_partial:
        raise SplitSizeError(f"{name} {split}: found {n} faces, the published split has {expected} "
                             f"(incomplete download? pass --allow-partial to use it anyway)")


def prepare_wflw(root: Path, out: Path, allow_partial: bool = False) -> dict[str, Path]:
    """WFLW root holds ``WFLW_images/`` and ``WFLW_annotations/list_98pt_rect_attr_train_test/``."""
    ann_dir = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"WFLW annotation folder missing: {ann_dir}")
    written = {}
    for split in ("train", "test"):
        faces = read_wflw_list(ann_dir / f"list_98pt_rect_attr_{split}.txt", 98, split)
        _check("WFLW", split, len(faces), WFLW_SIZES[split], allow_partial)
        faces = [_prefixed(f, "WFLW_images") for f in faces]
        written[split] = write_annotations(faces, out / f"wflw_{split}.jsonl")
    return written


W300_VAL_FRACTION = 0.15
"""Share of the 300W training images held out (the same rule and fraction as the WFLW development split)."""


def w300_split_key(image: str) -> str:
    """The string the 300W held-out split hashes: ``300w/<path relative to the 300W root>``, whatever the root
    folder is called. It is the path :mod:`train.distill` hashes for the photos under ``shared/data/300w`` (it
    left out the held-out ones), so the split must not change."""
    return f"300w/{Path(image).as_posix()}"


def is_w300_validation_image(image: str, fraction: float = W300_VAL_FRACTION) -> bool:
    """True for the 300W images of the fixed held-out split (``image`` relative to the 300W root)."""
    return is_validation_image(w300_split_key(image), fraction)


class PartialReleaseError(ValueError):
    """A dataset folder lacks parts of the official release (and ``allow_partial`` was not given)."""


def prepare_300w(root: Path, out: Path, allow_partial: bool = False, log=print) -> dict[str, Path]:
    """300W in its official layout (``afw/``, ``helen/{trainset,testset}/``, ``lfpw/{trainset,testset}/``,
    ``ibug/``, ``.pts`` beside each image). Writes, with image paths relative to ``root``:

    - ``300w_{train,common,challenge}.jsonl``: the official splits, for each split whose folders are all present
      (counts checked against the published sizes unless ``allow_partial``);
    - ``300w68_{train,val}.jsonl``: the faces of the training folders present, split by image with the fixed hash
      of :func:`is_w300_validation_image` (15 %, as for WFLW). These are the files for our own models: the
      ``val`` faces are held out of training and distillation.

    A missing folder is an error unless ``allow_partial``; then the parts present are used and ``log`` gets a
    report of what is missing (e.g. ``shared/data/300w`` holds AFW and part of HELEN and LFPW train only).
    """
    root = Path(root)
    counts = w300_part_counts(root)
    missing = [sub for sub, n in counts.items() if not n]
    present = [sub for sub, n in counts.items() if n]
    if not present:
        raise FileNotFoundError(f"no 300W folder with .pts files in {root} (expected {', '.join(counts)})")
    if missing and not allow_partial:
        found = ", ".join(f"{sub} {counts[sub]}/{W300_PART_SIZES[sub]}" for sub in present)
        raise PartialReleaseError(f"300W in {root} is a partial release: missing {', '.join(missing)} "
                                  f"(found {found} faces); pass --allow-partial to use the parts present")
    written = {}
    if missing:
        log(f"300W in {root}: partial release")
        for sub, n in counts.items():
            state = "missing" if not n else f"{n} faces"
            log(f"  {sub:15s} {state:>10s}   (published {W300_PART_SIZES[sub]})")
    for split, subs in W300_SPLITS.items():
        if any(sub in missing for sub in subs):
            have = [sub for sub in subs if sub in present]
            if missing:
                log(f"  official {split} split: " + (f"incomplete (only {', '.join(have)}), not written"
                                                     if have else "missing, not written"))
            continue
        faces = read_300w(root, split)
        _check("300W", split, len(faces), W300_SIZES[split], allow_partial)
        written[split] = write_annotations(faces, out / f"300w_{split}.jsonl")
    if missing and not {"common", "challenge"} & set(written):
        log("  no 300W test split: there is no 300W benchmark figure to claim from these files")
    faces = read_300w(root, "train", skip_missing=True)
    if faces:
        for f in faces:
            f.split = "val" if is_w300_validation_image(f.image) else "train"
        for s in ("train", "val"):
            written[f"300w68_{s}"] = write_annotations([f for f in faces if f.split == s], out / f"300w68_{s}.jsonl")
        n_val = sum(f.split == "val" for f in faces)
        log(f"  held-out split of the training folders (fixed hash of '300w/<path>', "
            f"{100 * W300_VAL_FRACTION:.0f} % of images): {len(faces) - n_val} train, {n_val} held out")
    return written


def prepare_cofw(root: Path, out: Path, allow_partial: bool = False) -> dict[str, Path]:
    """COFW root holds ``COFW_train_color.mat`` / ``COFW_test_color.mat`` or COCO-style ``*_cofw.json``."""
    written = {}
    for split in ("train", "test"):
        mat = root / f"COFW_{split}_color.mat"
        coco = root / f"{split}_cofw.json"
        if mat.is_file():
            faces = read_cofw_mat(mat, split, root / f"cofw_{split}_images")
        elif coco.is_file():
            faces = read_cofw_coco(coco, split)
        else:
            raise FileNotFoundError(f"COFW {split}: neither {mat.name} nor {coco.name} in {root}")
        _check("COFW", split, len(faces), COFW_SIZES[split], allow_partial)
        written[split] = write_annotations(faces, out / f"cofw_{split}.jsonl")
    return written


def _prefixed(face: FaceAnnotation, prefix: str) -> FaceAnnotation:
    face.image = f"{prefix}/{face.image}"
    return face


def is_validation_image(image: str, fraction: float) -> bool:
    """Fixed split by image: a hash of the path, so it never changes with file order or machine."""
    h = int(hashlib.sha1(image.encode()).hexdigest()[:8], 16)
    return (h % 10_000) < fraction * 10_000


def _use_official_labels(faces68: list[FaceAnnotation], subset_dir: Path) -> int:
    """Replace derived points by reduced official 98-point labels for faces matched by their jaw points."""
    from star_track.model.schemes import WFLW_98

    from .readers import read_wflw_subsets

    if not subset_dir.is_dir():
        return 0
    official: dict[str, list[np.ndarray]] = {}
    for f in read_wflw_subsets(subset_dir):
        official.setdefault(f.image, []).append(WFLW_98.reduce_to_68(f.landmarks))
    replaced = 0
    for f in faces68:
        for pts in official.get(f.image.removeprefix("WFLW_images/"), []):
            if np.abs(pts[:17] - f.landmarks[:17]).max() < 0.01:  # jaw = every second contour point
                f.landmarks = pts.astype(np.float32)
                f.extra["labels"] = "wflw98-official"
                replaced += 1
                break
    return replaced


WFLW_TRAIN_LIST = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_train.txt"
"""The official WFLW training-split list inside a WFLW root (in ``shared/data``: the train faces on the photos
present, flags all 0)."""
WFLW_VAL_FRACTION = 0.15
"""Share of the WFLW photos held out (:func:`is_wflw_validation_image`)."""


def wflw_split_key(image: str) -> str:
    """The string the WFLW held-out split hashes: ``WFLW_images/<event>/<name>.jpg``, whether ``image`` carries
    the ``WFLW_images/`` prefix (our annotation files) or not (the official lists)."""
    image = Path(image).as_posix()
    return image if image.startswith("WFLW_images/") else f"WFLW_images/{image}"


def is_wflw_validation_image(image: str, fraction: float = WFLW_VAL_FRACTION) -> bool:
    """True for the WFLW photos of the fixed held-out split. One rule for every face on a photo, test-split or
    train-split (they share photos): it is the rule the 660 test faces were split by before the train labels
    came, so those held-out faces stay held out."""
    return is_validation_image(wflw_split_key(image), fraction)


def read_shared_wflw_train(root: Path) -> list[FaceAnnotation]:
    """The official WFLW training-split faces of a WFLW root (98 points, box, image ``WFLW_images/...``,
    ``split="train"``; every image must exist). In ``shared/data``: 1,193 faces on 807 photos."""
    root = Path(root)
    path = root / WFLW_TRAIN_LIST
    if not path.is_file():
        raise FileNotFoundError(f"WFLW training list missing: {path}")
    faces = [_prefixed(f, "WFLW_images") for f in read_wflw_list(path, 98, "train")]
    missing = [f.image for f in faces if not (root / f.image).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} WFLW training images missing under {root} (first: {missing[0]})")
    return faces


def prepare_shared_wflw68(root: Path, out: Path, val_fraction: float = WFLW_VAL_FRACTION,
                          include_train_split: bool = True) -> dict[str, Path]:
    """The development data in ``shared/data/wflw``, split **by photo** with :func:`is_wflw_validation_image`
    (the faces of one photo are all train or all held out). Writes:

    - ``wflw68_train.jsonl``: the faces on training photos: the 660 test-split faces of the derived 68-point file
      (WFLW's own boxes and flags) and, with ``include_train_split``, the official training-split faces
      (:func:`read_shared_wflw_train`, 98 points reduced to 68);
    - ``wflw68_val.jsonl``: the test-split faces on held-out photos (96 faces, the set every earlier held-out WFLW
      figure was measured on, so figures stay comparable);
    - ``wflw68_val_trainsplit.jsonl``: the training-split faces on held-out photos (a second held-out set, never
      trained on);
    - ``wflw98_{train,val}.jsonl``: every face with official 98-point labels (the 514 test faces of the subset
      files and the training-split faces), the same photo split (for 98-point models).

    Each face's ``extra["wflw_split"]`` says which official split it belongs to. Where a test face has official
    98-point labels (514 of 660), its 68 points are those reduced with :attr:`WFLW_98.to_68
    <star_track.model.schemes.WFLW_98>`: the derived file places the 8 eyelid points on chords between WFLW eye
    points, ours on the lids as in 300W. The other 146 test faces keep the derived points.
    """
    from star_track.model.schemes import WFLW_98

    from .readers import read_wflw_subsets

    ann = root / "derived_68pt" / "list_68pt_rect_attr_test.txt"
    if not ann.is_file():
        raise FileNotFoundError(f"derived 68-point file missing: {ann}")
    faces = [_prefixed(f, "WFLW_images") for f in read_wflw_list(ann, 68)]
    _use_official_labels(faces, root / "WFLW_annotations" / "list_98pt_test")
    faces98 = []
    subset_dir = root / "WFLW_annotations" / "list_98pt_test"
    if subset_dir.is_dir():
        faces98 = [_prefixed(f, "WFLW_images") for f in read_wflw_subsets(subset_dir)]
    for f in faces + faces98:
        f.extra["wflw_split"] = "test"
    if include_train_split:
        train98 = read_shared_wflw_train(root)
        for f in train98:
            f.extra["wflw_split"] = "train"
        faces98 += train98
        faces += [FaceAnnotation(f.image, WFLW_98.reduce_to_68(f.landmarks).astype(np.float32), f.box,
                                 f.attributes, "train", {"wflw_split": "train", "labels": "wflw98-official"})
                  for f in train98]
    for f in faces + faces98:
        f.split = "val" if is_wflw_validation_image(f.image, val_fraction) else "train"
    pick = lambda fs, split, origin=None: [f for f in fs if f.split == split  # noqa: E731
                                           and origin in (None, f.extra["wflw_split"])]
    written = {"train": write_annotations(pick(faces, "train"), out / "wflw68_train.jsonl"),
               "val": write_annotations(pick(faces, "val", "test"), out / "wflw68_val.jsonl")}
    if include_train_split:
        written["val_trainsplit"] = write_annotations(pick(faces, "val", "train"),
                                                      out / "wflw68_val_trainsplit.jsonl")
    if faces98:
        for s in ("train", "val"):
            written[f"wflw98_{s}"] = write_annotations(pick(faces98, s), out / f"wflw98_{s}.jsonl")
    return written


PREPARERS = {"wflw": prepare_wflw, "300w": prepare_300w, "cofw": prepare_cofw, "wflw68-dev": prepare_shared_wflw68}
