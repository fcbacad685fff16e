"""Readers for the benchmarks' own distribution formats, converting to :class:`FaceAnnotation`.

- WFLW: ``list_98pt_rect_attr_{train,test}.txt`` (196 coords, box, 6 flags, path) and the per-subset test
  files ``list_98pt_test_<subset>.txt`` (196 coords, path), plus the derived 68-point variant.
- 300W: ``.pts`` files beside the images under afw/, helen/{trainset,testset}, lfpw/{trainset,testset}, ibug/.
- COFW: ``COFW_{train,test}_color.mat`` (MATLAB; v7.3 files need h5py) and the COCO-style per-image JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .annotations import FaceAnnotation

WFLW_ATTRIBUTES = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
WFLW_SUBSET_FILES = {a: f"list_98pt_test_{a}.txt" for a in WFLW_ATTRIBUTES}


class DatasetFormatError(ValueError):
    """An annotation file does not have the layout of its benchmark."""


def _floats(tokens: list[str], where: str) -> np.ndarray:
    try:
        return np.asarray([float(t) for t in tokens], np.float32)
    except ValueError as e:
        raise DatasetFormatError(f"{where}: non-numeric value ({e})") from None


def read_wflw_list(path: str | Path, num_points: int = 98, split: str = "") -> list[FaceAnnotation]:
    """WFLW list file: ``2N coords [x1 y1 x2 y2 f1..f6] path`` per line (box and flags optional)."""
    path = Path(path)
    faces = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            tok = line.split()
            if not tok:
                continue
            where = f"{path}:{i}"
            n2 = 2 * num_points
            if len(tok) not in (n2 + 1, n2 + 4 + 1, n2 + 4 + 6 + 1):
                raise DatasetFormatError(f"{where}: {len(tok)} fields, expected {n2 + 1}, {n2 + 5} or {n2 + 11} "
                                         f"for {num_points} points")
            pts = _floats(tok[:n2], where).reshape(num_points, 2)
            box, attrs = None, ()
            if len(tok) >= n2 + 5:
                box = tuple(float(v) for v in _floats(tok[n2:n2 + 4], where))
            if len(tok) == n2 + 11:
                flags = _floats(tok[n2 + 4:n2 + 10], where)
                attrs = tuple(a for a, v in zip(WFLW_ATTRIBUTES, flags) if v > 0)
            faces.append(FaceAnnotation(tok[-1], pts, box, attrs, split))
    return faces


def _face_key(face: FaceAnnotation) -> tuple:
    return (face.image, tuple(np.round(face.landmarks[:4].ravel(), 2)))


def read_wflw_subsets(folder: str | Path) -> list[FaceAnnotation]:
    """Merge the six ``list_98pt_test_<subset>.txt`` files into distinct faces tagged with their subsets."""
    folder = Path(folder)
    merged: dict[tuple, FaceAnnotation] = {}
    found = False
    for attr, name in WFLW_SUBSET_FILES.items():
        p = folder / name
        if not p.is_file():
            continue
        found = True
        for face in read_wflw_list(p, 98, "test"):
            key = _face_key(face)
            if key in merged:
                merged[key].attributes = merged[key].attributes + (attr,)
            else:
                face.attributes = (attr,)
                merged[key] = face
    if not found:
        raise FileNotFoundError(f"no WFLW subset files (list_98pt_test_<subset>.txt) in {folder}")
    return list(merged.values())


def read_pts(path: str | Path) -> np.ndarray:
    """300W ``.pts`` file -> (N, 2) 0-based pixel coordinates (the file is 1-based)."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        n = int(next(ln for ln in lines if ln.startswith("n_points")).split(":")[1])
        start = lines.index("{") + 1
        end = lines.index("}")
    except (StopIteration, ValueError, IndexError):
        raise DatasetFormatError(f"{path}: not a .pts file (needs 'n_points:' and a {{ }} block)") from None
    rows = lines[start:end]
    if len(rows) != n:
        raise DatasetFormatError(f"{path}: header says {n} points, found {len(rows)}")
    pts = _floats(" ".join(rows).split(), str(path)).reshape(n, 2)
    return pts - 1.0


W300_SPLITS = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
}
W300_SIZES = {"train": 3148, "common": 554, "challenge": 135}
W300_PART_SIZES = {"afw": 337, "helen/trainset": 2000, "lfpw/trainset": 811, "helen/testset": 330,
                   "lfpw/testset": 224, "ibug": 135}
"""Faces per folder of the official release (they add up to :data:`W300_SIZES`)."""
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def w300_part_counts(root: str | Path) -> dict[str, int | None]:
    """``.pts`` files per folder of the official layout; None where the folder is missing."""
    root = Path(root)
    return {sub: sum(1 for _ in (root / sub).rglob("*.pts")) if (root / sub).is_dir() else None
            for sub in W300_PART_SIZES}


def read_300w(root: str | Path, split: str, skip_missing: bool = False) -> list[FaceAnnotation]:
    """300W faces of one split (``train``, ``common``, ``challenge`` or ``full`` = common + challenge).

    A missing folder of the split is an error, unless ``skip_missing`` (a partial release: the folders present
    are read, e.g. ``afw`` and ``helen/trainset`` only).
    """
    root = Path(root)
    if split == "full":
        return read_300w(root, "common", skip_missing) + read_300w(root, "challenge", skip_missing)
    if split not in W300_SPLITS:
        raise ValueError(f"unknown 300W split {split!r} (train, common, challenge, full)")
    faces = []
    for sub in W300_SPLITS[split]:
        folder = root / sub
        if not folder.is_dir():
            if skip_missing:
                continue
            raise FileNotFoundError(f"300W folder missing: {folder}")
        for pts_file in sorted(folder.rglob("*.pts")):
            image = next((pts_file.with_suffix(e) for e in IMAGE_EXTS if pts_file.with_suffix(e).exists()), None)
            if image is None:
                raise FileNotFoundError(f"no image beside {pts_file}")
            pts = read_pts(pts_file)
            if len(pts) != 68:
                raise DatasetFormatError(f"{pts_file}: {len(pts)} points, 300W has 68")
            faces.append(FaceAnnotation(str(image.relative_to(root)), pts, None, (sub.split("/")[0],), split))
    return faces


def read_cofw_coco(json_path: str | Path, split: str = "") -> list[FaceAnnotation]:
    """COFW in the COCO-style per-image JSON (keypoints as x, y, visibility triplets; 29 points)."""
    json_path = Path(json_path)
    d = json.loads(json_path.read_text())
    images = {im["id"]: im["file_name"] for im in d.get("images", [])}
    faces = []
    for ann in d.get("annotations", []):
        kp = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
        if len(kp) != 29:
            raise DatasetFormatError(f"{json_path}: annotation with {len(kp)} keypoints, COFW has 29")
        box = None
        if "bbox" in ann:
            x, y, w, h = ann["bbox"]
            box = (x, y, x + w, y + h)
        occluded = tuple(f"occluded_{i}" for i, v in enumerate(kp[:, 2]) if 0 < v < 2)
        faces.append(FaceAnnotation(images[ann["image_id"]], kp[:, :2], box, occluded, split))
    return faces


def read_cofw_mat(mat_path: str | Path, split: str, image_dir: str | Path) -> list[FaceAnnotation]:
    """COFW ``.mat`` release: images are written as PNGs into ``image_dir`` (the .mat holds pixels, not paths).

    Variables: ``IsTr``/``IsT`` images, ``phisTr``/``phisT`` (M x 87: 29 x, 29 y, 29 occlusion flags, 1-based),
    ``bboxesTr``/``bboxesT`` (x, y, w, h).
    """
    import cv2

    mat_path, image_dir = Path(mat_path), Path(image_dir)
    suffix = "Tr" if split == "train" else "T"
    images, phis, boxes = _load_cofw_mat(mat_path, suffix)
    image_dir.mkdir(parents=True, exist_ok=True)
    faces = []
    for i, (img, phi, bb) in enumerate(zip(images, phis, boxes)):
        name = f"cofw_{split}_{i:04d}.png"
        if img.ndim == 3:
            img = img[..., ::-1]  # the .mat holds RGB
        cv2.imwrite(str(image_dir / name), img)
        pts = np.stack([phi[:29], phi[29:58]], 1).astype(np.float32) - 1.0
        occluded = tuple(f"occluded_{j}" for j in range(29) if phi[58 + j] > 0)
        x, y, w, h = (float(v) for v in bb)
        faces.append(FaceAnnotation(f"{image_dir.name}/{name}", pts, (x - 1, y - 1, x - 1 + w, y - 1 + h),
                                    occluded, split))
    return faces


def _load_cofw_mat(path: Path, suffix: str):
    if not path.is_file():
        raise FileNotFoundError(f"COFW file not found: {path}")
    try:
        from scipy.io import loadmat

        m = loadmat(str(path))
        images = [np.asarray(im) for im in m[f"Is{suffix}"].ravel()]
        return images, np.asarray(m[f"phis{suffix}"]), np.asarray(m[f"bboxes{suffix}"])
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        try:
            import h5py
        except ImportError:
            raise RuntimeError(f"{path} is a MATLAB v7.3 file; reading it needs h5py (pip install h5py)") from None
        with h5py.File(path, "r") as f:
            images = [np.asarray(f[ref]).T for ref in np.asarray(f[f"Is{suffix}"]).ravel()]
            return images, np.asarray(f[f"phis{suffix}"]).T, np.asarray(f[f"bboxes{suffix}"]).T
