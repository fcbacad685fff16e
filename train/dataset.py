"""Face crops + targets for training and evaluation, as a torch Dataset.

Each face is cut once from its photo into a cached, generously framed patch (so augmentation never reads
the JPEG again); the training crop is then a random similarity of the landmark-defined crop the runtime
uses (:func:`star_track.crop.crop_from_landmarks`), so the network sees faces framed as in tracking.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from star_track.crop import (LANDMARK_CROP_SCALE, Crop, crop_from_landmarks, crop_pixels_to_normalized,
                             normalized_to_crop_pixels)
from star_track.model.schemes import LandmarkScheme

from .annotations import FaceAnnotation
from .augment import AugmentConfig, draw_geometry, photometric
from .targets import edge_maps, point_maps

CACHE_MARGIN = 2.0  # cached patch side / crop side: room for shifts, rotations and zoom-out


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine of ``outer(inner(x))``."""
    return outer[:, :2] @ np.vstack([inner, [0, 0, 1]])[:2] + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


class FaceCropDataset(Dataset):
    """Faces of one annotation list. ``augment=None`` gives the deterministic evaluation crop."""

    def __init__(self, faces: list[FaceAnnotation], image_root: str | Path, scheme: LandmarkScheme,
                 input_size: int, augment: AugmentConfig | None = None, seed: int = 0,
                 crop_scale: float = LANDMARK_CROP_SCALE, with_targets: bool = True):
        bad = [f.image for f in faces if len(f.landmarks) != scheme.num_points]
        if bad:
            raise ValueError(f"{len(bad)} faces do not have {scheme.num_points} points (first: {bad[0]})")
        self.faces, self.root, self.scheme = faces, Path(image_root), scheme
        self.size, self.hm = input_size, input_size // 4
        self.augment, self.seed, self.crop_scale = augment, seed, crop_scale
        self.with_targets = with_targets
        self.epoch = 0
        self.flip_perm = scheme.flip_permutation()
        self._patches: list[tuple[np.ndarray, np.ndarray]] = []
        self._build_cache()

    def _build_cache(self) -> None:
        cache_size = int(round(self.size * CACHE_MARGIN))
        last_path, img = None, None
        for face in self.faces:
            path = self.root / face.image
            if path != last_path:
                img = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if img is None:
                    raise FileNotFoundError(f"cannot read image {path}")
                last_path = path
            crop = crop_from_landmarks(face.landmarks, cache_size, self.crop_scale * CACHE_MARGIN)
            self._patches.append((crop.warp(img), crop.matrix))

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch; DDP samplers need the same)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        patch, to_patch = self._patches[i]
        face = self.faces[i]
        pts = face.landmarks @ to_patch[:, :2].T + to_patch[:, 2]
        crop = crop_from_landmarks(pts, self.size, self.crop_scale)
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            g = draw_geometry(rng, self.augment)
            if g.flip:
                patch = patch[:, ::-1]
                pts = pts.copy()
                # Mirror about the labels' own axis: ``extra["mirror_shift"]`` (image pixels) is how far right of
                # the mirror-consistent position the source's labels sit (train.combined.mirror_shift).
                shift = float(face.extra.get("mirror_shift", 0.0)) * float(np.hypot(*to_patch[:, 0]))
                pts[:, 0] = patch.shape[1] - 1 - pts[:, 0] + 2 * shift
                pts = pts[self.flip_perm]
                crop = crop_from_landmarks(pts, self.size, self.crop_scale)
            cx, cy = crop.center
            crop = Crop((cx + g.shift[0] * crop.side, cy + g.shift[1] * crop.side), crop.side * g.scale,
                        g.angle, self.size)
        img = crop.warp(np.ascontiguousarray(patch))
        crop_pts = crop.to_crop(pts)
        if self.augment is not None:
            img = photometric(img, rng, self.augment)
        target = np.clip(crop_pixels_to_normalized(crop_pts, self.size), -1, 1).astype(np.float32)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float(),
            "landmarks": torch.from_numpy(target),
            "index": torch.tensor(i),
        }
        if self.with_targets:
            item["pointmaps"] = torch.from_numpy(point_maps(crop_pts.astype(np.float32), self.size, self.hm))
            item["edgemaps"] = torch.from_numpy(edge_maps(crop_pts, self.scheme, self.size, self.hm))
        if self.augment is None:  # frame -> crop, so evaluation can map predictions back to the photo
            item["to_crop"] = torch.from_numpy(_compose(crop.matrix, to_patch))
        return item


def label_framed_crops(faces: list[FaceAnnotation], root: str | Path, scheme: LandmarkScheme, input_size: int,
                       count: int, crop_scale: float = LANDMARK_CROP_SCALE) -> np.ndarray:
    """(B, S, S, 3) uint8 BGR evaluation crops (framed from the labels, no augmentation) of ``count`` of ``faces``
    spread evenly over the list; only their photos are read."""
    picked = [faces[int(i)] for i in np.linspace(0, len(faces) - 1, min(count, len(faces))).astype(int)]
    ds = FaceCropDataset(picked, root, scheme, input_size, None, crop_scale=crop_scale, with_targets=False)
    return np.stack([ds[i]["image"].numpy().transpose(1, 2, 0) for i in range(len(ds))]).astype(np.uint8)


def crop_to_frame(normalized: np.ndarray, to_crop: np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] crop coordinates (B, N, 2) -> original image pixels, given the (B, 2, 3) frame->crop affines."""
    px = normalized_to_crop_pixels(normalized, size)
    out = np.empty_like(px)
    for b in range(len(px)):
        inv = cv2.invertAffineTransform(to_crop[b])
        out[b] = px[b] @ inv[:, :2].T + inv[:, 2]
    return out
