"""What the landmark writers share: the :class:`LandmarkWriter` protocol, the covariance layout, number
formatting and the one error for a failed write (see :mod:`star_track.io.landmarks` for the formats)."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ...analysis.analyzer import COLUMNS
from ...errors import OutputError

FORMATS = (".csv", ".json", ".npz", ".parquet")
"""Landmark file extensions, each with its writer (:func:`~star_track.io.landmarks.open_landmark_writer`)."""
COVARIANCE_LAYOUT = ("xx", "xy", "yy")
"""The three numbers a landmark's 2x2 covariance is stored as, in this order (:func:`flat_covariance`)."""
ANALYSIS_COLUMNS: tuple[str, ...] = COLUMNS
"""The face state's columns in every format, after ``expected_error`` (:func:`analysis_values`; NaN/empty/null
where unknown)."""

_os_write = os.write  # the one low-level write (tests simulate a disk filling up mid-write through it)


class LandmarkWriter(Protocol):
    """What every landmark writer offers; ``with writer:`` closes it (the file is complete afterwards)."""

    path: Path
    frames_written: int

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        """Record one frame's faces (an empty list records a frame without faces)."""
        ...

    def close(self) -> None:
        """Finish the file (complete and valid after this; idempotent)."""
        ...

    def __enter__(self) -> "LandmarkWriter": ...

    def __exit__(self, *exc: object) -> None: ...


def flat_covariance(cov: Any, dtype: Any = np.float64) -> np.ndarray:
    """(N, 2, 2) covariances as (N, 3) rows in :data:`COVARIANCE_LAYOUT` order (xx, xy, yy)."""
    c = np.asarray(cov, dtype)
    return np.stack([c[:, 0, 0], c[:, 0, 1], c[:, 1, 1]], 1)


def expected_error(face: Any) -> float:
    """A face's ``expected_error`` (NaN for a face object without one)."""
    return float(getattr(face, "expected_error", float("nan")))


def analysis_values(face: Any) -> list[float]:
    """A face's :data:`ANALYSIS_COLUMNS` values (yaw, pitch, roll, their sd, eye_open_left/right, mouth_open,
    blink as 0/1), NaN where unknown: no pose, the analysis off, or a face object without these fields."""
    pose = getattr(face, "pose", None)
    angles = ([pose.yaw, pose.pitch, pose.roll, pose.yaw_sd, pose.pitch_sd, pose.roll_sd] if pose is not None
              else [float("nan")] * 6)
    eyes = [float(v) for v in getattr(face, "eye_open", (float("nan"), float("nan")))]
    mouth = float(getattr(face, "mouth_open", float("nan")))
    known = np.isfinite(eyes).any() and hasattr(face, "blink")  # no openness: the blink flag is unknown too
    return [float(v) for v in angles] + eyes + [mouth, (1.0 if face.blink else 0.0) if known else float("nan")]


def write_all(f: Any, data: bytes) -> None:
    """Write all of ``data`` to the unbuffered file ``f`` (os.write may write part of it)."""
    view = memoryview(data)
    while view:
        n = _os_write(f.fileno(), view)
        view = view[n:]


def reason(e: BaseException) -> str:
    """The words for an exception in a one-line message: "No space left on device" for a full disk."""
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e):
        return "No space left on device"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def write_failed(path: Path, e: OSError, frames: int) -> OutputError:
    """The error for a write that failed after ``frames`` complete frames (which the file keeps)."""
    return OutputError(f"{path}: {reason(e)} (kept the {frames} complete frames written before)")
