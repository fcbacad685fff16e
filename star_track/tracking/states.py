"""The face state a :class:`~star_track.tracking.tracker.Tracker` adds to each :class:`Face`: head pose, eye
and mouth openness, the blink flag (:mod:`star_track.analysis`).

:class:`FaceStates` owns one :class:`~star_track.analysis.analyzer.FrameAnalyzer` per Tracker (per-track pose
smoothing and blink detectors; :meth:`FaceStates.reset` with the tracker) and fills the fields from the *raw*
landmarks and their calibrated covariances (the landmark smoother would blunt a three-frame lid closure; the
pose has its own smoothing). Photos go through :func:`~star_track.analysis.analyzer.analyze_photo` (no
smoothing, no blinks). In the Tracker it costs about 0.2 ms of CPU per frame for one face and 0.15 ms per face
with four on the shared 2-core build machine (thread CPU time right after ``Tracker.track``, ``python -m
benchmarks.pose``, tracker-path rows; README, "Head pose");
``analysis=False`` switches it off (the fields stay None / NaN / False).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..analysis.analyzer import FaceState, FrameAnalyzer, analyze_photo
from ..analysis.blinks import Blink
from ..analysis.pose import Camera
from .face import Face


def camera_arg(camera: Camera | Sequence[float] | None) -> Camera | None:
    """``camera`` as :class:`~star_track.analysis.pose.Camera`: one, ``(fx, fy, cx, cy)`` in pixels, or None.

    Raises:
        ValueError: not four finite numbers, or a focal length that is not > 0.
    """
    vals: tuple[float, ...] | None
    if camera is None or isinstance(camera, Camera):
        vals = None if camera is None else (camera.fx, camera.fy, camera.cx, camera.cy)
    else:
        try:
            vals = tuple(float(v) for v in camera)
        except (TypeError, ValueError):
            raise ValueError(f"camera must be (fx, fy, cx, cy) in pixels, got {camera!r}") from None
    if vals is None:
        return None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or not (vals[0] > 0 and vals[1] > 0):
        raise ValueError(f"camera must be four finite numbers fx, fy, cx, cy with fx, fy > 0, got {camera!r}")
    return Camera(*vals)


def focal_arg(focal: float | None) -> float | None:
    """``focal`` (pixels) checked: None or a finite number > 0 (ValueError otherwise)."""
    if focal is None:
        return None
    if isinstance(focal, bool) or not isinstance(focal, (int, float)) or not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal must be a finite number of pixels > 0 (or None: the frame width), got {focal!r}")
    return float(focal)


class FaceStates:
    """Fills :class:`Face`'s ``pose``, ``eye_open``, ``mouth_open`` and ``blink`` (see module docs)."""

    def __init__(self, enabled: bool = True, focal: float | None = None,
                 camera: Camera | Sequence[float] | None = None):
        """``focal``: focal length in pixels (default: the frame width); ``camera``: full intrinsics
        ``(fx, fy, cx, cy)`` (overrides ``focal``; default principal point: the frame centre)."""
        self.enabled = bool(enabled)
        self.focal = focal_arg(focal)
        self.camera = camera_arg(camera)
        self.reset()

    def reset(self) -> None:
        """Forget every track's pose filter and blink detector (a new video, a scene cut)."""
        self.analyzer = FrameAnalyzer(focal=self.focal, camera=self.camera)
        self._last = -math.inf

    def blink_counts(self) -> dict[int, int]:
        """Blinks per track id since the last :meth:`reset` (tracks without a blink are left out)."""
        return self.analyzer.blink_counts()

    @property
    def blinks(self) -> list[Blink]:
        """Every blink that has ended since the last :meth:`reset` (track id, start and end time, depth)."""
        return self.analyzer.blinks

    def video(self, faces: list[Face], frame_shape: tuple[int, ...], time: float) -> list[Face]:
        """The video frame's faces with their state (time in seconds; kept increasing for the filters)."""
        if not self.enabled or not faces:
            return faces
        self._last = time = max(float(time), self._last + 1e-6)
        states = self.analyzer.update([f.track_id for f in faces], *self._arrays(faces),
                                      (frame_shape[1], frame_shape[0]), time)
        return [_with_state(f, s) for f, s in zip(faces, states)]

    def photo(self, faces: list[Face], frame_shape: tuple[int, ...]) -> list[Face]:
        """A still image's faces with their state (no smoothing, no blinks)."""
        if not self.enabled or not faces:
            return faces
        states = analyze_photo(*self._arrays(faces), (frame_shape[1], frame_shape[0]), focal=self.focal,
                               camera=self.camera)
        return [_with_state(f, s) for f, s in zip(faces, states)]

    @staticmethod
    def _arrays(faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
        if len(faces) == 1:  # the common case: views, no copies
            return faces[0].raw_landmarks[None], faces[0].covariance[None]
        return np.stack([f.raw_landmarks for f in faces]), np.stack([f.covariance for f in faces])


def _with_state(face: Face, s: FaceState) -> Face:
    face.pose, face.eye_open, face.mouth_open, face.blink = s.pose, s.eye_open, s.mouth_open, s.eyes_closed
    return face
