"""Still images: read upright (EXIF orientation applied), written under the output rules of
:mod:`star_track.io.claims`."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError, VideoError
from .claims import write_exclusive
from .paths import check_input_path, check_output_path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 (H, W) gray or (H, W, 3) BGR, upright: its EXIF orientation is applied (a phone
    photo stored sideways with orientation 6 comes out as it is shown), so landmarks are in display coordinates.
    Deeper images (16-bit, float) are scaled to 0..255; an alpha channel is dropped (the tracker drops it too).

    Raises:
        VideoError: missing file, a directory, a URL, or not an image OpenCV can read.
    """
    src = check_input_path(path, "an image")
    # IMREAD_UNCHANGED ignores the EXIF orientation; ANYDEPTH | ANYCOLOR applies it and keeps gray and 16-bit.
    img = cv2.imread(str(src), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise VideoError(f"{os.fspath(path)}: not an image OpenCV can read")
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
    return img



def jpeg_ends_early(path: str | os.PathLike, image: np.ndarray) -> bool:
    """True for a JPEG file cut short (a partial download, a full disk): its data stops before the end marker
    and the decoder filled the rest of ``image`` (as :func:`read_image` returned it: turned upright, so the gray
    may be along any edge) with gray. Both are checked: phone JPEGs may carry data after their end marker, and a
    photo may end in flat gray."""
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return False
        f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
        tail = f.read()
    edges = (image[-8:], image[:8], image[:, :8], image[:, -8:])
    return b"\xff\xd9" not in tail and any(bool((e == 128).all()) for e in edges)


def check_image_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`check_output_path` plus an image format OpenCV can write (judged by the extension)."""
    p = Path(path)
    if not cv2.haveImageWriter(str(p)):
        raise OutputError(f"{p}: unsupported image extension {p.suffix or '(none)'} (use e.g. .png or .jpg)")
    return check_output_path(p, overwrite)



def write_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False) -> None:
    """Encode ``image`` (BGR) in the format ``path``'s extension names and write it under the same name rules
    as every other output (:func:`~star_track.io.claims.write_exclusive`).

    Raises:
        OutputError: the extension cannot be encoded, or the file cannot be written.
    """
    p = Path(path)
    ok, encoded = cv2.imencode(p.suffix, image)
    if not ok:
        raise OutputError(f"{p}: could not encode the image (unsupported extension?)")
    write_exclusive(p, encoded.tobytes(), overwrite)
