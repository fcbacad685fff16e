"""Face detection: BlazeFace through mediapipe's Tasks ``FaceDetector`` (first stage of source -> detect -> crop).

The two bundled models (short range for selfie/webcam distance, full range for faces further away) ship in
``star_track/model/bundled/`` under the Apache-2.0 licence and are verified by sha256 before loading. A user-supplied
``.tflite`` (any mediapipe Tasks face-detector model) is accepted as a path and loaded without a checksum.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ..errors import DetectorError
from ..model import BUNDLED_DIR

BUNDLED_DETECTORS: dict[str, tuple[str, str]] = {
    "short": ("face_detection_short_range.tflite",
              "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "full": ("face_detection_full_range_sparse.tflite",
             "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
}
"""Detector name -> (file in :data:`star_track.model.BUNDLED_DIR`, sha256)."""

MAX_DETECT_PIXELS = 1 << 28
"""Largest image (pixels) handed to mediapipe; larger ones are downscaled to fit for detection only. mediapipe
crashes (SIGSEGV) on images over 2 GiB; BlazeFace sees 128-192 px anyway, so nothing is lost."""
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")
"""BlazeFace's six keypoints, in output order ("right" is the subject's right, i.e. image-left)."""


_LIVE: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Close detectors still open at exit: mediapipe's own finaliser fails during interpreter shutdown."""
    for det in list(_LIVE):
        try:
            det.close()
        except Exception:
            pass


@dataclass(frozen=True)
class Detection:
    """One detected face in frame pixels."""

    box: np.ndarray
    """(4,) float32 x1, y1, x2, y2."""
    score: float
    keypoints: np.ndarray
    """(6, 2) float32 x, y in frame pixels, in :data:`KEYPOINT_NAMES` order."""

    @property
    def roll(self) -> float:
        """Head roll in radians: the angle of the line from the image-left eye to the image-right eye."""
        d = self.keypoints[1] - self.keypoints[0]
        return float(np.arctan2(d[1], d[0]))


def resolve_detector(detector: str | Path) -> tuple[Path, str | None]:
    """``"short"``/``"full"`` -> bundled file + expected sha256; anything else is a user path (no checksum)."""
    if isinstance(detector, str) and detector in BUNDLED_DETECTORS:
        name, digest = BUNDLED_DETECTORS[detector]
        return BUNDLED_DIR / name, digest
    return Path(detector), None


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Silence C++-level log lines (LiteRT/TFLite INFO messages) written straight to file descriptor 2.

    Process-wide while active: other threads' stderr output is dropped for that moment too.
    """
    if not enabled:
        yield
        return
    fd = 2  # native code writes to descriptor 2 whatever sys.stderr is
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class PreparedFrame:
    """A frame ready for :meth:`FaceDetector.run` (from :meth:`FaceDetector.prepare`)."""

    image: Any
    """The mediapipe image (its own RGB buffer)."""
    back: np.ndarray
    """(4,) detector pixels -> frame pixels, x y x y."""
    width: int
    height: int


def _aligned_rgb(frame_bgr: np.ndarray, alignment: int = 64) -> np.ndarray:
    """BGR -> RGB copy in a buffer aligned as LiteRT wants (else it copies again and logs a warning)."""
    n = frame_bgr.size
    buf = np.empty(n + alignment, np.uint8)
    off = (-buf.ctypes.data) % alignment
    rgb = buf[off:off + n].reshape(frame_bgr.shape)
    cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB, dst=rgb)
    return rgb


class FaceDetector:
    """BlazeFace face detector (mediapipe Tasks API).

    Args:
        model: ``"short"`` (bundled short-range model, faces within ~2 m), ``"full"`` (bundled full-range
            model, faces up to ~5 m) or a path to a mediapipe Tasks face-detector ``.tflite``.
        mode: ``"video"`` (tracking across frames; timestamps must increase) or ``"image"`` (independent
            stills).
        min_confidence: detections below this score are dropped.
        min_suppression: non-maximum-suppression IoU threshold.
        quiet: hide mediapipe's native log lines while the model loads.

    Raises:
        DetectorError: the model file is missing, fails its checksum or is not a valid face-detector model.

    Not thread-safe: use one instance per thread. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, model: str | Path = "short", mode: str = "video", min_confidence: float = 0.5,
                 min_suppression: float = 0.3, quiet: bool = True):
        if mode not in ("video", "image"):
            raise ValueError(f"mode must be 'video' or 'image', got {mode!r}")
        path, digest = resolve_detector(model)
        if not path.exists():
            raise DetectorError(f"face detector model {path} does not exist")
        if not path.is_file():
            raise DetectorError(f"face detector model {path} is not a file")
        data = path.read_bytes()
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:  # bytes already read: no 2nd read
            raise DetectorError(f"face detector model {path} is corrupt (sha256 mismatch); reinstall star-track")
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        running_mode = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
        options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=data),
                                             running_mode=running_mode,
                                             min_detection_confidence=float(min_confidence),
                                             min_suppression_threshold=float(min_suppression))
        self.model_path = path
        self.mode = mode
        self._quiet = quiet
        try:
            with quiet_native_stderr(quiet):
                self._detector = vision.FaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as e:
            raise DetectorError(f"face detector model {path} could not be loaded: {e}") from None
        self._last_ts = -1
        self._warm = False
        _LIVE.add(self)

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int | None = None) -> list[Detection]:
        """Faces in a (H, W, 3) uint8 BGR frame, best score first.

        In video mode ``timestamp_ms`` must increase from call to call; if omitted (or not increasing) the
        previous timestamp + 1 is used.
        """
        return self.run(self.prepare(frame_bgr), timestamp_ms)

    def prepare(self, frame_bgr: np.ndarray) -> "PreparedFrame":
        """The first half of :meth:`detect`: the frame as the detector's own RGB copy (downscaled if huge). The
        caller may change or reuse ``frame_bgr`` afterwards, e.g. while :meth:`run` works on another thread."""
        import mediapipe as mp

        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame must be (H, W, 3) uint8 BGR, got {frame_bgr.shape} {frame_bgr.dtype}")
        h, w = frame_bgr.shape[:2]
        back = np.ones(4, np.float32)  # detector pixels -> frame pixels (x, y, x, y)
        if h * w > MAX_DETECT_PIXELS:  # a huge photo or frame: downscale (boxes are mapped back in run)
            scale = math.sqrt(MAX_DETECT_PIXELS / (h * w))
            size = (max(1, int(w * scale)), max(1, int(h * scale)))
            frame_bgr = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
            back = np.array([w / size[0], h / size[1]] * 2, np.float32)
        return PreparedFrame(mp.Image(image_format=mp.ImageFormat.SRGB, data=_aligned_rgb(frame_bgr)), back, w, h)

    def run(self, frame: "PreparedFrame", timestamp_ms: int | None = None) -> list[Detection]:
        """The second half of :meth:`detect`: the detector on a :meth:`prepare`-d frame."""
        with quiet_native_stderr(self._quiet and not self._warm):  # first call logs delegate creation
            if self.mode == "video":
                ts = self._last_ts + 1 if timestamp_ms is None else int(timestamp_ms)
                ts = max(ts, self._last_ts + 1)
                self._last_ts = ts
                result = self._detector.detect_for_video(frame.image, ts)
            else:
                result = self._detector.detect(frame.image)
        self._warm = True
        out = []
        for det in result.detections:
            bb = det.bounding_box
            box = np.array([bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height],
                           np.float32) * frame.back
            kps = np.array([[k.x * frame.width, k.y * frame.height] for k in det.keypoints],
                           np.float32).reshape(-1, 2)
            score = float(det.categories[0].score) if det.categories else 0.0
            out.append(Detection(box=box, score=score, keypoints=kps))
        out.sort(key=lambda d: -d.score)
        return out

    def close(self) -> None:
        """Release the mediapipe detector (idempotent)."""
        det = getattr(self, "_detector", None)
        if det is not None:
            with quiet_native_stderr(self._quiet):
                det.close()
            self._detector = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
