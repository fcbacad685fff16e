"""Video input: :class:`VideoSource` reads a file, stream, capture device (FFmpeg through PyAV) or camera
(OpenCV) as :class:`VideoFrame` s in display geometry."""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import cv2
import numpy as np

from ..detection.blazeface import quiet_native_stderr
from ..errors import VideoError
from .av_video import PIPE_HINT, AvReader
from .paths import check_input_path


@dataclass(frozen=True)
class VideoFrame:
    """A decoded frame with its index and time (seconds from the start)."""

    index: int
    time: float
    image: np.ndarray


class VideoSource:
    """Frames from a video file, a stream (``rtsp://``, ``http(s)://``, ...), a capture device path or a camera.

    Args:
        source: a file path, a stream URL, a device path such as ``/dev/video0`` (decoded by FFmpeg through
            PyAV), or a camera index (int, or a string of digits; read through OpenCV).
        fps: override the frame rate (cameras often report 0): a finite number > 0 and at most 1000.

    Raises:
        ValueError: ``fps`` is not a finite number in (0, 1000].
        VideoError: missing file, a directory, not a decodable video, no frames, a stream that cannot be
            opened, or no such camera (a negative index is refused before OpenCV sees it).

    Files, pipes and streams are read in display geometry (FFmpeg's own rule): the stream's display matrix is
    applied (phone videos, coded sideways with a 90 degree rotation, come upright; mirrored ones unmirrored) and
    non-square pixels (anamorphic video, sample aspect ratio != 1) are resampled to square ones, stretching the
    shorter displayed side. :attr:`size`, the frames and so the landmarks are all in that geometry, and a
    :class:`VideoSink` writes what it is given (no rotation or aspect ratio tag). A FIFO or process
    substitution (``<(cat clip.mkv)``) is read as a stream.

    Iterate to get :class:`VideoFrame` s; iteration ends at the end of the file or when a camera or stream
    stops delivering frames (disconnect). Use as a context manager or call :meth:`close`.

    Frame times are the container's own timestamps (PTS) counted from the first frame (so variable-frame-rate
    files give the real gaps, which the smoothers use), falling back to ``index / fps`` where there are none;
    for a camera index, the time since its first frame was read (``fps`` overrides both with ``index / fps``).
    The input's audio, if any, can be copied to a :class:`VideoSink` (``audio_from=source``; create the sink
    before iterating).
    """

    def __init__(self, source: str | os.PathLike | int, fps: float | None = None):
        if fps is not None:
            try:
                fps = float(fps)
            except (TypeError, ValueError):
                raise ValueError(f"fps must be a number > 0 or None, got {fps!r}") from None
            if not 0 < fps <= 1000:  # also NaN and inf; a negative rate gives negative frame times
                raise ValueError(f"fps must be > 0 and <= 1000 (or None: the file's own rate), got {fps}")
        spec = source if isinstance(source, int) else os.fspath(source)
        self.is_camera = isinstance(spec, int) or bool(_INT.fullmatch(str(spec).strip()))
        self.name = f"camera {int(spec)}" if self.is_camera else str(spec)
        if self.is_camera and int(spec) < 0:  # cv2.VideoCapture(-1) segfaults in some OpenCV builds
            raise VideoError(f"{self.name}: a camera index must be 0 or more")
        self._first: np.ndarray | None = None
        self._fixed_rate = fps is not None
        self._ended = False
        self._cap: cv2.VideoCapture | None = None
        self._av: AvReader | None = None
        self.origin = 0.0
        """Container time (s) of the first frame: frame times count from it."""
        self.frames_read = 0
        """Frames delivered so far."""
        if self.is_camera:
            with quiet_native_stderr():  # OpenCV logs its own warning; we raise a clear error below
                self._cap = cv2.VideoCapture(int(spec))
                opened = self._cap.isOpened()
            if not opened:
                raise VideoError(f"{self.name}: no such camera or it cannot be opened")
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._cap.release()
                raise VideoError(f"{self.name}: camera opened but delivers no frames")
            self._first = frame
            reported = self._cap.get(cv2.CAP_PROP_FPS) or 0.0
            count = 0
        else:
            reader = self._av = open_reader(str(spec))
            first = reader.read()
            if first is None:
                reader.close()
                if reader.pipe:
                    raise VideoError(f"{self.name}: {PIPE_HINT}")
                raise VideoError(f"{self.name}: contains no decodable frames")
            t0, self._first = first
            self.origin = float(t0) if t0 is not None else 0.0
            reported, count = reader.rate, reader.frame_count
        self.fps = float(fps) if fps else (float(reported) if 0 < reported < 1000 else 30.0)
        self.height, self.width = self._first.shape[:2]
        self.frame_count: int | None = None if self.is_camera or count <= 0 else count
        """Frames the container reports (an estimate; None for cameras, streams / unknown)."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    @property
    def rotation(self) -> int:
        """Counter-clockwise degrees of the input's display matrix, already applied to the frames (0: none)."""
        return self._av.rotation if self._av is not None else 0

    @property
    def sample_aspect_ratio(self) -> Fraction:
        """The input's pixel width / height (1: square); frames are already resampled to square pixels."""
        return self._av.sample_aspect_ratio if self._av is not None else Fraction(1)

    @property
    def reader(self) -> AvReader | None:
        """The FFmpeg reader of a file, stream or device (None for a camera index, or once closed): a
        :class:`~star_track.io.sink.VideoSink` copies the input's audio from it."""
        return self._av

    @property
    def has_audio(self) -> bool:
        """True when the input has an audio stream (a :class:`VideoSink` can copy it)."""
        return self._av is not None and self._av.audio is not None

    def __iter__(self) -> Iterator[VideoFrame]:
        index, last = 0, 0.0
        start = time.monotonic()
        frame: np.ndarray | None
        if self._first is not None:
            frame, self._first = self._first, None
            self.frames_read = 1
            yield VideoFrame(0, 0.0, frame)
            index = 1
        while self._cap is not None or self._av is not None:
            if self._av is not None:
                if self._av.audio_wanted is None:
                    self._av.audio_wanted = False  # iteration began without a sink asking for the audio
                    self._av.audio_packets.clear()
                got = self._av.read()
                ok, (pts, frame) = got is not None, got if got is not None else (None, None)
            else:
                assert self._cap is not None  # the loop's condition
                ok, frame = self._cap.read()
                pts = None
            if not ok or frame is None:
                self._ended = True
                return
            last = self._frame_time(index, last, start, pts)
            self.frames_read = index + 1
            yield VideoFrame(index, last, frame)
            index += 1

    @property
    def ended(self) -> bool:
        """True once iteration reached the end of the input."""
        return self._ended

    @property
    def ended_early(self) -> bool:
        """True when reading stopped well before the frame count the container lists: a truncated or
        damaged file (the frames before the damage are still delivered). Meaningful once iteration ended."""
        count = self.frame_count
        return bool(self._ended and count and self.frames_read < 0.99 * count - 1)

    def _frame_time(self, index: int, last: float, start: float, pts: float | None) -> float:
        if self._fixed_rate:
            return index / self.fps
        if self.is_camera:
            t = time.monotonic() - start
        else:
            t = float(pts) - self.origin if pts is not None else float("nan")
        # Frames without timestamps, or repeated ones: assume the nominal rate.
        return t if np.isfinite(t) and t > last else last + 1.0 / self.fps

    def close(self) -> None:
        """Release the file, stream or camera (idempotent)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._av is not None:
            self._av.close()
            self._av = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_INT = re.compile(r"[+-]?\d+")


def camera_source(spec: str | int) -> int | str:
    """Parse ``--camera``: an index (>= 0), a stream URL or an existing device path / file.

    Raises:
        VideoError: a negative index, or a path that does not exist (checked before OpenCV or FFmpeg see it).
    """
    text = str(spec).strip()
    if _INT.fullmatch(text):
        if int(text) < 0:
            raise VideoError(f"camera {text}: a camera index must be 0 or more")
        return int(text)
    if "://" in text:
        return text
    if not os.path.exists(text):
        raise VideoError(f"camera {text}: no such device or file")
    return text


def open_reader(spec: str) -> AvReader:
    """An :class:`~star_track.io.av_video.AvReader` on a stream URL, a capture device or a file."""
    if "://" in spec:
        return AvReader(spec, spec, live=True)
    path = check_input_path(spec, "a video file", allow_devices=True)
    if path.is_char_device():  # /dev/video0: a V4L2 capture device
        return AvReader(str(path), spec, fmt="v4l2" if sys.platform.startswith("linux") else None, live=True)
    if not path.is_file():  # a FIFO or a process substitution (/dev/fd/N): read as a stream, never seeked
        return AvReader(str(path), spec, pipe=True)
    if path.stat().st_size == 0:
        raise VideoError(f"{spec}: file is empty")
    return AvReader(str(path), spec)


