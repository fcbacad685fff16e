"""Video input and output: :class:`VideoSource` (file or camera) and :class:`VideoSink` (mp4v via OpenCV)."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .detect import quiet_native_stderr

SINK_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class VideoError(RuntimeError):
    """A video input or output cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class VideoFrame:
    """A decoded frame with its index and time (seconds from the start)."""

    index: int
    time: float
    image: np.ndarray


class VideoSource:
    """Frames from a video file or a camera.

    Args:
        source: a file path, or a camera index (int, or a string of digits).
        fps: override the frame rate (cameras often report 0).

    Raises:
        VideoError: missing file, a directory, not a decodable video, no frames, or no such camera.

    Iterate to get :class:`VideoFrame` s; iteration ends at the end of the file or when a camera stops
    delivering frames (disconnect). Use as a context manager or call :meth:`close`.

    Frame times are the file's own timestamps (so variable-frame-rate files give the real gaps, which the
    smoothers use), falling back to ``index / fps`` where the container has none; for a camera, the time since
    its first frame was read (``fps`` overrides both with ``index / fps``).
    """

    def __init__(self, source: str | os.PathLike | int, fps: float | None = None):
        self.is_camera = isinstance(source, int) or (isinstance(source, str) and source.isdigit())
        self.name = f"camera {int(source)}" if self.is_camera else str(source)
        if self.is_camera and int(source) < 0:  # cv2.VideoCapture(-1) segfaults in some OpenCV builds
            raise VideoError(f"{self.name}: a camera index must be 0 or more")
        self._first: np.ndarray | None = None
        self._fixed_rate = fps is not None
        self._ended = False
        self.frames_read = 0
        """Frames delivered so far."""
        if self.is_camera:
            with quiet_native_stderr():  # OpenCV logs its own warning; we raise a clear error below
                self._cap = cv2.VideoCapture(int(source))
                opened = self._cap.isOpened()
            if not opened:
                raise VideoError(f"{self.name}: no such camera or it cannot be opened")
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._cap.release()
                raise VideoError(f"{self.name}: camera opened but delivers no frames")
            self._first = frame
        else:
            path = check_input_path(source, "a video file")
            if path.stat().st_size == 0:
                raise VideoError(f"{path}: file is empty")
            with quiet_native_stderr():  # FFmpeg logs e.g. "moov atom not found" itself; we report it below
                self._cap = cv2.VideoCapture(str(path))
                opened = self._cap.isOpened()
            if not opened:
                raise VideoError(f"{path}: not a video OpenCV can decode (unknown format, or truncated/corrupt)")
            with quiet_native_stderr():
                ok, frame = self._cap.read()
            if not ok or frame is None:
                self._cap.release()
                raise VideoError(f"{path}: contains no decodable frames")
            self._first = frame
        reported = self._cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = float(fps) if fps else (float(reported) if 0 < reported < 1000 else 30.0)
        self.height, self.width = self._first.shape[:2]
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = None if self.is_camera or count <= 0 else count
        """Frames the container reports (an estimate; None for cameras / unknown)."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def __iter__(self) -> Iterator[VideoFrame]:
        index, last = 0, 0.0
        start = time.monotonic()
        if self._first is not None:
            frame, self._first = self._first, None
            self.frames_read = 1
            yield VideoFrame(0, 0.0, frame)
            index = 1
        while self._cap is not None:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._ended = True
                return
            last = self._frame_time(index, last, start)
            self.frames_read = index + 1
            yield VideoFrame(index, last, frame)
            index += 1

    @property
    def ended_early(self) -> bool:
        """True when reading stopped well before the frame count the container lists: a truncated or
        damaged file (the frames before the damage are still delivered). Meaningful once iteration ended."""
        count = self.frame_count
        return bool(self._ended and count and self.frames_read < 0.99 * count - 1)

    def _frame_time(self, index: int, last: float, start: float) -> float:
        if self._fixed_rate:
            return index / self.fps
        if self.is_camera:
            t = time.monotonic() - start
        else:
            t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0  # the frame just read
        # Containers without timestamps report 0 or repeat values: then assume the nominal rate.
        return t if np.isfinite(t) and t > last else last + 1.0 / self.fps

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_input_path(source: str | os.PathLike, what: str) -> Path:
    """``source`` as a Path if it is an existing file, else a VideoError naming it as given (``what``: "a video
    file", "an image"). URLs are refused by name (pathlib would turn ``http://x`` into ``http:/x``)."""
    text = os.fspath(source)
    if "://" in str(text):
        raise VideoError(f"{text}: URLs and streams are not supported (give a local file)")
    path = Path(text)
    if not path.exists():
        raise VideoError(f"{text}: no such file")
    if path.is_dir():
        raise VideoError(f"{text}: is a directory, not {what}")
    return path


MIN_FREE_BYTES = 32 * 2**20
"""Free space an output folder must have before processing starts (a full disk is refused up front)."""


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any processing) if ``path`` cannot be written.

    Raises:
        VideoError: the path is a directory, exists and ``overwrite`` is False, or its folder is missing, not
            writable, or has less than :data:`MIN_FREE_BYTES` free.
    """
    p = Path(path)
    if p.is_dir():
        raise VideoError(f"{p}: is a directory")
    if os.path.lexists(p) and not overwrite:  # lexists: a symlink, even dangling or looping, is taken
        raise VideoError(f"{p}: already exists (use --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        if parent.exists():
            raise VideoError(f"{p}: {parent} is not a folder")
        raise VideoError(f"{p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VideoError(f"{p}: folder {parent} is not writable")
    if p.exists() and not p.is_symlink() and not os.access(p, os.W_OK):
        raise VideoError(f"{p}: file is not writable")
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:
        raise VideoError(f"{p}: disk almost full ({free / 2**20:.1f} MiB free in {parent})")
    return p


def check_video_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`check_output_path` plus a supported video extension (see :data:`SINK_CODECS`)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SINK_CODECS:
        raise VideoError(f"{p}: unsupported output extension {ext or '(none)'} "
                         f"(use one of {', '.join(sorted(SINK_CODECS))})")
    return check_output_path(p, overwrite)


def check_image_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`check_output_path` plus an image format OpenCV can write (judged by the extension)."""
    p = Path(path)
    if not cv2.haveImageWriter(str(p)):
        raise VideoError(f"{p}: unsupported image extension {p.suffix or '(none)'} (use e.g. .png or .jpg)")
    return check_output_path(p, overwrite)


RESERVE_BYTES = 4 * 2**20
"""Free space kept on the output disk during a run so that the video can still be finalised."""
MAX_SINK_FPS = 1000.0
"""Highest frame rate a :class:`VideoSink` accepts."""


class VideoSink:
    """Writes BGR frames to a video file (mp4v in .mp4/.mov/.m4v/.mkv, MJPG in .avi).

    Frames go to a hidden temporary file beside ``path`` that is renamed to ``path`` by :meth:`close`, so a
    finished (or cleanly interrupted) run leaves a complete, playable file and a crashed run never leaves a
    half-written file under the final name. Frames of another size are resized to the sink's size.

    Raises:
        VideoError: unsupported extension, unwritable path, existing file without ``overwrite``, or the
            encoder cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], overwrite: bool = False):
        self.path = check_video_output(path, overwrite)
        ext = self.path.suffix.lower()
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            raise VideoError(f"{self.path}: invalid frame rate {fps!r}") from None
        if not (0 < fps <= MAX_SINK_FPS):  # also NaN; an infinite rate makes the encoder spin forever
            raise VideoError(f"{self.path}: invalid frame rate {fps} (must be > 0 and <= {MAX_SINK_FPS:g})")
        if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
            raise VideoError(f"{self.path}: invalid frame size {size}")
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps)
        from .output_files import OutputClaim

        self._claim = OutputClaim(self.path, overwrite)  # also removes stale partials of killed runs
        self._tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}{ext}")
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*SINK_CODECS[ext]), self.fps, self.size)
        if not self._writer.isOpened():
            self._writer.release()
            self._writer = None
            self._tmp.unlink(missing_ok=True)
            self._claim.release()
            raise VideoError(f"{self.path}: cannot open a {SINK_CODECS[ext]} encoder for {self.size[0]}x{self.size[1]}")
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: uint8 (H, W) / (H, W, 1) gray, (H, W, 3) BGR or (H, W, 4) BGRA.

        Raises:
            ValueError: another dtype or channel count (the encoder would silently drop such frames).
        """
        if self._writer is None:
            raise VideoError(f"{self.path}: sink is closed")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames must be uint8 numpy arrays, got "
                             f"{getattr(frame, 'dtype', type(frame).__name__)}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)) or 0 in frame.shape:
            raise ValueError(f"{self.path}: frames must be (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA, "
                             f"got shape {frame.shape}")
        if frame.ndim == 2:
            frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it to its final name (idempotent)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames_written == 0:
            self._tmp.unlink(missing_ok=True)
            self._claim.release()
            return
        self._claim.commit(self._tmp)

    def ensure_space(self) -> None:
        """Raise VideoError when the output's disk is nearly full, while the encoder can still finish the file
        (an MP4's index is written at the end): call it before writing each frame's outputs."""
        free = shutil.disk_usage(self._tmp.parent).free
        if free < RESERVE_BYTES:
            raise VideoError(f"{self.path}: No space left on device (stopped after {self.frames_written} frames; "
                             "the outputs are complete up to there)")

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
