"""Pack labelled faces for a machine without the photos: each face's training patch as one small image, and its
annotations in that patch's pixels.

A GPU machine gets the working tree and at most 64 MiB with it, not ``shared/data``. :class:`FaceCropDataset
<train.dataset.FaceCropDataset>` never reads more of a photo than the patch it caches per face (``CACHE_MARGIN``
times the landmark crop, room for every augmentation); a pack stores exactly that patch, so training from a pack
(``--image-root`` the pack, ``--train-annotations`` its files) sees the same pixels up to the image codec's loss.
Labels move with the patch, and so does ``extra["mirror_shift"]`` (image pixels).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from star_track.crop import LANDMARK_CROP_SCALE, crop_from_landmarks

from .annotations import FaceAnnotation, read_annotations, write_annotations
from .dataset import CACHE_MARGIN

PACK_QUALITY = 85
"""WebP quality of the packed patches: 8 KB a face at 256 px, mean |difference| 2.5 grey levels from the unpacked
crops (90: 11 KB, 2.0). The 3,282 faces of the 68-point training file pack into 30 MiB with their annotations."""


def pack_faces(faces: list[FaceAnnotation], root: Path, out_dir: Path, name: str, side: int,
               quality: int = PACK_QUALITY, crop_scale: float = LANDMARK_CROP_SCALE) -> Path:
    """Write each face's patch (``CACHE_MARGIN`` x its landmark crop at ``crop_scale``, ``side`` pixels square:
    twice the largest input size to be trained, so no detail is lost) to ``out_dir/name/<i>.webp`` and the faces,
    moved into their patches, to ``out_dir/name.jsonl``. Returns that file. The patches are written to a staging
    folder that replaces ``out_dir/name`` only when every face is packed: a failure leaves no partial pack, and a
    re-pack no patches of the last one."""
    import shutil

    staging = out_dir / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        packed = _pack_into(faces, root, staging, name, side, quality, crop_scale)
    except BaseException:  # a missing photo, a full disk, Ctrl-C: no partial pack
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir / name, ignore_errors=True)
    staging.rename(out_dir / name)
    return write_annotations(packed, out_dir / f"{name}.jsonl")


def _pack_into(faces: list[FaceAnnotation], root: Path, folder: Path, name: str, side: int, quality: int,
               crop_scale: float) -> list[FaceAnnotation]:
    """Write the patches into ``folder``; returns the faces moved into them (image paths ``name/<i>.webp``)."""
    packed, last_path, img = [], None, None
    for i, face in enumerate(faces):
        path = Path(root) / face.image
        if path != last_path:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None  # (no OpenCV warning line)
            if img is None:
                raise FileNotFoundError(f"image not found or unreadable: {path} (face {i + 1} of {name})")
            last_path = path
        crop = crop_from_landmarks(face.landmarks, side, crop_scale * CACHE_MARGIN)
        if not cv2.imwrite(str(folder / f"{i:05d}.webp"), crop.warp(img), [cv2.IMWRITE_WEBP_QUALITY, quality]):
            raise OSError(f"cannot write {folder / f'{i:05d}.webp'}")
        extra = dict(face.extra)
        if "mirror_shift" in extra:  # image pixels: scaled into the patch's
            extra["mirror_shift"] = float(extra["mirror_shift"]) * float(np.hypot(*crop.matrix[:, 0]))
        # 0.01 px is far below the labels' own noise; fewer digits keep the pack small
        packed.append(replace(face, image=f"{name}/{i:05d}.webp", landmarks=np.round(crop.to_crop(face.landmarks), 2),
                              box=None, extra={**extra, "packed_from": face.image}))
    return packed


def pack_files(annotations: list[Path], root: Path, out_dir: Path, side: int,
               quality: int = PACK_QUALITY) -> dict[str, tuple[int, int]]:
    """:func:`pack_faces` for each annotation file (named by its stem). Returns name -> (faces, bytes)."""
    done = {}
    for ann in annotations:
        faces = read_annotations(ann)
        pack_faces(faces, root, out_dir, ann.stem, side, quality)
        done[ann.stem] = (len(faces), sum(p.stat().st_size for p in (out_dir / ann.stem).iterdir()))
    return done
