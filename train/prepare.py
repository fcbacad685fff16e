"""``prepare``: read a benchmark in its own layout and write our annotation files (JSON Lines).

Counts are checked against the published split sizes; a mismatch is an error unless ``allow_partial``.
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
    report of what is missing (e.g. ``shared/data/300w`` holds AFW and part of HELEN train only).
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


def prepare_shared_wflw68(root: Path, out: Path, val_fraction: float = 0.15) -> dict[str, Path]:
    """The development data in ``shared/data/wflw``: all 660 faces of the derived 68-point file (WFLW's own
    boxes and flags), split by image into train / val. Used to train the bundled compact model.

    Where a face also has official 98-point labels (514 of 660), its points are those reduced with
    :attr:`WFLW_98.to_68 <star_track.model.schemes.WFLW_98>`: the derived file places the 8 eyelid points on chords
    between WFLW eye points, ours on the lids as in 300W. The other 146 faces keep the derived points.
    """
    ann = root / "derived_68pt" / "list_68pt_rect_attr_test.txt"
    if not ann.is_file():
        raise FileNotFoundError(f"derived 68-point file missing: {ann}")
    faces = [_prefixed(f, "WFLW_images") for f in read_wflw_list(ann, 68)]
    _use_official_labels(faces, root / "WFLW_annotations" / "list_98pt_test")
    for f in faces:
        f.split = "val" if is_validation_image(f.image, val_fraction) else "train"
    return {s: write_annotations([f for f in faces if f.split == s], out / f"wflw68_{s}.jsonl")
            for s in ("train", "val")}


PREPARERS = {"wflw": prepare_wflw, "300w": prepare_300w, "cofw": prepare_cofw, "wflw68-dev": prepare_shared_wflw68}
