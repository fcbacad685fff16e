"""Photo mode: face detection that looks for every face in a still image (small and rolled ones too).

BlazeFace sees the whole image squeezed into 192 x 192 pixels, so in a 1024-pixel-wide photo a face under ~60 px
shrinks below the ~12 px the model can find, and it finds few faces rolled past ~45 degrees. Photo mode adds
passes, all with the same detector (IMAGE mode), and merges them:

1. **Whole image** (the single pass video mode uses).
2. **Tiles**: overlapping square tiles of ``tile`` pixels, each seen at 192 x 192, so faces are
   ``tile / 192`` times less shrunk (``tile=512``: about 2x the whole-image scale of a 1024-px photo). Tiles
   overlap by ``overlap`` of their side; a detection touching an inner tile edge is dropped (the neighbouring
   tile holds that face whole, or the whole-image pass finds it when it is larger than the overlap).
3. **Rolled passes**, only when passes 1-2 found no face (fewer than ``rotate_below``) or a face rolled by more
   than ``rotate_if_rolled`` degrees (a turned photo, or rolled faces the upright passes half see): the image
   turned by each of ``rotations`` degrees (canvas enlarged, nothing cut off), whole image and tiles again.
   Boxes and keypoints are mapped back into the photo, so :attr:`Detection.roll` gives the face's roll and the
   landmark crop turns with it. These passes only add faces the upright passes did not find.

Detections of passes 1-2 are merged by non-maximum suppression (IoU ``nms_iou``, best score kept).
:meth:`star_track.Tracker.detect_image` then drops faces found only by the extra passes whose landmark
confidence is below the tracker's ``redetect_below`` (false detections on texture), and merges faces whose
landmarks converged onto one face.

Time budget
    One detector call costs about the same whatever the image size (~5 ms on a laptop CPU core: the model runs
    at 192 x 192; only the resize grows with the image). Photo mode makes ``1 + tiles`` calls, where tiles grow
    with the image area: ``ceil((W - o) / (t - o)) * ceil((H - o) / (t - o))`` for tile side ``t`` and overlap
    ``o`` pixels; a 1024 x 768 photo gets 6 tiles, a 1600 x 1200 one 12. Beyond ``max_tiles`` the tiles are made larger
    instead of more numerous, so a call never makes more than ``1 + max_tiles`` detector calls, plus the same
    again per rotation when the rolled passes run (on 80 held-out WFLW photos, ~1000 x 800, they ran for a few
    upright photos and for most photos turned by 60 degrees). Images no larger than ``tile`` get no tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .blazeface import Detection, FaceDetector
from .boxes import box_iou, nms


@dataclass(frozen=True)
class PhotoSearch:
    """Options of the photo-mode face search (see the module docs for what each pass does and costs).

    Args:
        tile: tile side in pixels (0 = no tiles). Smallest face found: roughly ``tile / 16`` pixels wide.
        overlap: tile overlap as a fraction of the tile side.
        max_tiles: most tiles per pass; larger images get larger tiles.
        rotations: roll angles (degrees, counter-clockwise) of the extra passes for rolled faces (empty = none).
        rotate_below: the rolled passes run when the upright passes found fewer faces than this ...
        rotate_if_rolled: ... or when one of the faces they found is rolled by more than this (degrees; the
            photo may be turned, or hold rolled faces next to the ones found).
        nms_iou: detections of one face from different passes are merged above this box IoU.
    """

    tile: int = 512
    overlap: float = 0.25
    max_tiles: int = 24
    rotations: tuple[float, ...] = (90.0, -90.0, 45.0, -45.0)
    rotate_below: int = 1
    rotate_if_rolled: float = 30.0
    nms_iou: float = 0.3

    def __post_init__(self) -> None:
        if self.tile < 0:
            raise ValueError(f"tile must be >= 0, got {self.tile}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1, got {self.max_tiles}")
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")


def tile_grid(height: int, width: int, tile: int, overlap: float = 0.25,
              max_tiles: int = 24) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (x1, y1, x2, y2) covering a ``height`` x ``width`` image; [] if one tile would
    cover it. Tiles grow beyond ``tile`` when more than ``max_tiles`` would be needed."""
    if tile <= 0 or max(height, width) <= tile:
        return []

    def counts(t: float) -> tuple[int, int]:
        step = t * (1 - overlap)
        return (max(1, math.ceil((width - t) / step) + 1 if width > t else 1),
                max(1, math.ceil((height - t) / step) + 1 if height > t else 1))

    t = float(tile)
    while counts(t)[0] * counts(t)[1] > max_tiles:
        t *= 1.1
    if max(height, width) <= t:
        return []
    t = int(round(t))
    nx, ny = counts(t)

    def starts(n: int, size: int) -> list[int]:
        if n == 1:
            return [0]
        return [int(round(i * (size - t) / (n - 1))) for i in range(n)]

    return [(x, y, min(x + t, width), min(y + t, height)) for y in starts(ny, height) for x in starts(nx, width)]


def rotate_image(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned counter-clockwise by ``degrees`` on a canvas that holds all of it, and the 2x3 map
    from image to canvas pixels."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    size = (int(round(h * s + w * c)), int(round(h * c + w * s)))
    m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), m


def map_detection(det: Detection, m: np.ndarray) -> Detection:
    """A detection in canvas pixels mapped through the inverse of the similarity ``m`` (image -> canvas).

    Keypoints map exactly; the box keeps its side and moves with its centre (it stays the face's own upright
    box, which is what the crop calibration expects together with :attr:`Detection.roll`)."""
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    kps = det.keypoints.astype(np.float64) @ inv[:, :2].T + inv[:, 2]
    centre = (det.box[:2] + det.box[2:]).astype(np.float64) / 2 @ inv[:, :2].T + inv[:, 2]
    half = (det.box[2:] - det.box[:2]).astype(np.float64) / 2
    box = np.concatenate([centre - half, centre + half]).astype(np.float32)
    return Detection(box=box, score=det.score, keypoints=kps.astype(np.float32))


def _shift(det: Detection, dx: float, dy: float) -> Detection:
    off = np.array([dx, dy], np.float32)
    return Detection(box=det.box + np.tile(off, 2), score=det.score, keypoints=det.keypoints + off)


def _suppress(dets: list[Detection], iou: float) -> list[Detection]:
    """:func:`~star_track.detection.boxes.nms` on detections: best score first."""
    if not dets:
        return []
    keep = nms(np.stack([d.box for d in dets]), np.array([d.score for d in dets]), iou)
    return [dets[i] for i in keep]


def _tiled_pass(detector: FaceDetector, image: np.ndarray, search: PhotoSearch,
                whole: bool = True) -> list[Detection]:
    """Whole image (if ``whole``) + tiles, in the pixels of ``image``."""
    h, w = image.shape[:2]
    found = list(detector.detect(image)) if whole else []
    for x1, y1, x2, y2 in tile_grid(h, w, search.tile, search.overlap, search.max_tiles):
        margin = 0.01 * (x2 - x1)
        for d in detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2])):
            b = d.box
            cut = ((x1 > 0 and b[0] <= margin) or (y1 > 0 and b[1] <= margin)
                   or (x2 < w and b[2] >= x2 - x1 - margin) or (y2 < h and b[3] >= y2 - y1 - margin))
            if not cut:
                found.append(_shift(d, x1, y1))
    return found


def photo_detect(detector: FaceDetector, image: np.ndarray, search: PhotoSearch | None = None) -> list[Detection]:
    """Every face ``detector`` (IMAGE mode) finds in a (H, W, 3) uint8 BGR photo with the passes of
    ``search`` (default :class:`PhotoSearch`), merged; best score first."""
    return [d for d, _ in photo_detect_sources(detector, image, search)]


def photo_detect_sources(detector: FaceDetector, image: np.ndarray,
                         search: PhotoSearch | None = None) -> list[tuple[Detection, bool]]:
    """:func:`photo_detect` with, for each detection, whether the whole-image upright pass (the one video mode
    runs) found it; False = found by a tile or a rolled pass only."""
    search = search or PhotoSearch()
    if detector.mode != "image":
        raise ValueError("photo_detect needs a detector in 'image' mode")
    whole = detector.detect(image)
    found = _suppress(whole + _tiled_pass(detector, image, search, whole=False), search.nms_iou)
    rolled = any(abs(math.degrees(d.roll)) > search.rotate_if_rolled for d in found)
    if search.rotations and (len(found) < search.rotate_below or rolled):
        extra: list[Detection] = []
        for angle in search.rotations:
            canvas, m = rotate_image(image, angle)
            extra += [map_detection(d, m) for d in _tiled_pass(detector, canvas, search)]
        # Rolled passes only add faces: a face the upright passes found keeps its upright detection.
        found = sorted(found + _new_faces(found, _suppress(extra, search.nms_iou), search.nms_iou),
                       key=lambda d: -d.score)
    whole_ids = {id(d) for d in whole}
    return [(d, id(d) in whole_ids) for d in found]


def _new_faces(known: list[Detection], candidates: list[Detection], iou: float) -> list[Detection]:
    """The candidates that overlap no known detection above ``iou``."""
    if not known or not candidates:
        return list(candidates)
    m = box_iou(np.stack([d.box for d in candidates]), np.stack([d.box for d in known]))
    return [d for d, row in zip(candidates, m) if row.max() <= iou]
