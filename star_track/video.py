"""Video input and output: :class:`VideoSource` (file, stream, device or camera) and :class:`VideoSink` (H.264 with
the input's audio, via PyAV)."""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .detection.blazeface import quiet_native_stderr
from .errors import OutputError, VideoError

SINK_CODECS = {".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".mkv": "h264", ".avi": "mjpeg"}
"""Output extensions and the codec each gets by default (``codec=`` / ``--codec`` chooses another)."""


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
        self._cap = self._av = None
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
            self._av = _open_av(str(spec))
            first = self._av.read()
            if first is None:
                self._av.close()
                if self._av.pipe:
                    from .av_video import PIPE_HINT

                    raise VideoError(f"{self.name}: {PIPE_HINT}")
                raise VideoError(f"{self.name}: contains no decodable frames")
            t0, self._first = first
            self.origin = float(t0) if t0 is not None else 0.0
            reported, count = self._av.rate, self._av.frame_count
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
                ok = got is not None
                pts, frame = got if ok else (None, None)
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


def _open_av(spec: str):
    """An :class:`~star_track.av_video.AvReader` on a stream URL, a capture device or a file."""
    from .av_video import AvReader

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


def check_input_path(source: str | os.PathLike, what: str, allow_devices: bool = False) -> Path:
    """``source`` as a Path if it is an existing file, else a VideoError naming it as given (``what``: "a video
    file", "an image"). URLs are refused by name (pathlib would turn ``http://x`` into ``http:/x``)."""
    text = os.fspath(source)
    if "://" in str(text) and not allow_devices:
        raise VideoError(f"{text}: URLs and streams are not supported (give a local file)")
    path = Path(text)
    if not path.exists():
        raise VideoError(f"{text}: no such file")
    if path.is_dir():
        raise VideoError(f"{text}: is a directory, not {what}")
    return path


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


MIN_FREE_BYTES = 32 * 2**20
"""Free space an output folder must have before processing starts (a full disk is refused up front)."""


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any processing) if ``path`` cannot be written.

    Raises:
        OutputError: the path is a directory, exists and ``overwrite`` is False, or its folder is missing, not
            writable, or has less than :data:`MIN_FREE_BYTES` free.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a directory")
    if os.path.lexists(p) and not overwrite:  # lexists: a symlink, even dangling or looping, is taken
        raise OutputError(f"{p}: already exists (use --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        if parent.exists():
            raise OutputError(f"{p}: {parent} is not a folder")
        raise OutputError(f"{p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: folder {parent} is not writable")
    if p.exists() and not p.is_symlink() and not os.access(p, os.W_OK):
        raise OutputError(f"{p}: file is not writable")
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:
        raise OutputError(f"{p}: disk almost full ({free / 2**20:.1f} MiB free in {parent})")
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
MIN_SINK_FPS = 0.01
"""Lowest frame rate a :class:`VideoSink` accepts (one frame per 100 s; below it the time base degenerates)."""


class SinkArgumentError(VideoError, ValueError):
    """A :class:`VideoSink` argument out of range (``fps``, a frame's ``time``): a ValueError naming it."""


class VideoSink:
    """Writes BGR frames to a video file: H.264 (libx264, yuv420p) in .mp4/.m4v/.mov/.mkv by default, MJPEG in
    .avi; ``codec`` picks ``h264``, ``hevc``, ``vp9``, ``av1`` or ``mpeg4``, ``crf``/``preset`` the quality.

    Frames go to a hidden temporary file beside ``path`` that is renamed to ``path`` by :meth:`close`, so a
    finished (or cleanly interrupted) run leaves a complete, playable file and a crashed run never leaves a
    half-written file under the final name. Frames of another size are resized to the sink's size. An odd
    width or height is padded to even (the last column/row repeated) because yuv420p needs even sizes:
    :attr:`padded` says so, nothing is cropped.

    With ``audio_from=source`` (a :class:`VideoSource` created before iterating) the input's audio is copied
    as is (re-encoded to AAC when the container cannot hold its codec), in sync with the frame times given to
    :meth:`write`; the sink holds the audio up to its last frame, all of it when the source was read to the end.

    Raises:
        VideoError: unsupported extension or codec setting, unwritable path, existing file without
            ``overwrite``, or the encoder cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], overwrite: bool = False, *,
                 codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 audio_from: "VideoSource | None" = None):
        self.path = check_video_output(path, overwrite)
        ext = self.path.suffix.lower()
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            raise SinkArgumentError(f"{self.path}: invalid frame rate fps={fps!r} (a number)") from None
        # Also NaN; an infinite rate makes the encoder spin forever, a tiny one loses the video at close.
        if not (MIN_SINK_FPS <= fps <= MAX_SINK_FPS):
            raise SinkArgumentError(f"{self.path}: invalid frame rate fps={fps!r} (must be >= {MIN_SINK_FPS:g} "
                                    f"and <= {MAX_SINK_FPS:g})")
        if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
            raise VideoError(f"{self.path}: invalid frame size {size}")
        from .av_video import CODECS, AvWriter, encoder_options

        self.codec = codec or SINK_CODECS[ext]
        if self.codec not in CODECS:
            raise VideoError(f"{self.path}: unknown codec {self.codec} (use one of {', '.join(CODECS)})")
        if ext == ".avi" and self.codec != "mjpeg":
            raise VideoError(f"{self.path}: .avi holds MJPEG only here (use .mp4, .mov or .mkv for {self.codec})")
        options = encoder_options(self.codec, crf, preset)
        self.size = (int(size[0]), int(size[1]))
        self.padded = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)
        """The encoded (even) size: ``size`` plus the repeated last column/row where ``size`` is odd."""
        self.fps = float(fps)
        from .output_files import OutputClaim

        self._claim = OutputClaim(self.path, overwrite)  # also removes stale partials of killed runs
        self._tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}{ext}")
        self._source = audio_from
        reader = getattr(audio_from, "_av", None)
        try:
            self._writer: AvWriter | None = AvWriter(str(self._tmp), self.codec, self.fps, self.padded, options, reader,
                                    getattr(audio_from, "origin", 0.0))
        except VideoError as e:
            self._writer = None
            self._tmp.unlink(missing_ok=True)
            self._claim.release()
            raise (OutputError if "No space" in str(e) else VideoError)(f"{self.path}: {e}") from None
        self.has_audio = self._writer is not None and self._writer._audio_out is not None
        """True when the input's audio is being copied."""
        self.audio_transcoded = self._writer.audio_transcoded
        """True when the input's audio is re-encoded to AAC because the container cannot hold its codec."""
        self.frames_written = 0
        from .output_files import SpaceReserve

        self._reserve = SpaceReserve(self._tmp)  # the header is written: the file exists
        self._space_checked = False  # ensure_space() ran for the next frame (process_video calls it first)
        try:
            self.ensure_space()
        except OutputError:
            self.close()
            raise

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Append one frame: uint8 (H, W) / (H, W, 1) gray, (H, W, 3) BGR or (H, W, 4) BGRA, shown at
        ``time`` seconds (default: ``frames_written / fps``; times must increase).

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
        if self.padded != self.size:
            frame = cv2.copyMakeBorder(frame, 0, self.padded[1] - self.size[1], 0, self.padded[0] - self.size[0],
                                       cv2.BORDER_REPLICATE)
        if time is None:
            t = self.frames_written / self.fps
        else:
            try:
                t = float(time)
            except (TypeError, ValueError):
                raise SinkArgumentError(f"{self.path}: invalid frame time time={time!r} (seconds)") from None
            if not (np.isfinite(t) and t >= 0):
                raise SinkArgumentError(f"{self.path}: invalid frame time time={time!r} (must be finite and "
                                        ">= 0)")
        if not self._space_checked:  # the encoder never meets a full disk: the file can always be finished
            self.ensure_space()
        self._space_checked = False
        try:
            self._writer.write(np.ascontiguousarray(frame), t)
        except OSError as e:
            raise OutputError(f"{self.path}: {e.strerror or e} (stopped after {self.frames_written} frames)") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (audio up to the last frame, or all of it when the source ended) and move it to its
        final name (idempotent). SIGINT/SIGTERM arriving meanwhile are delivered when it is done."""
        if self._writer is None:
            return
        from ._entry import deferred_signals

        with deferred_signals():
            writer, self._writer = self._writer, None
            try:
                writer.close(source_ended=bool(getattr(self._source, "ended", False)))
            except Exception as e:  # noqa: BLE001 - the partial file is dropped, the name released
                self._reserve.release()
                self._tmp.unlink(missing_ok=True)
                self._claim.release()
                raise OutputError(f"{self.path}: cannot finish the video ({e})") from None
            self._reserve.release()  # the space kept for the finish, unused, goes back
            if self.frames_written == 0:
                self._tmp.unlink(missing_ok=True)
                self._claim.release()
                return
            self._claim.commit(self._tmp)

    def reserve_bytes(self) -> int:
        """Space the finish of the file may still need: the frames the encoder holds (each at least twice the
        largest packet so far, or 1 bit per pixel), the container's index (about 64 bytes per packet) and 1 MiB
        of slack."""
        w = self._writer
        if w is None:
            return 0
        held = max(w.frames_in - w.packets_out, 0) + 2
        per_frame = max(2 * w.max_packet, self.padded[0] * self.padded[1] // 8)
        return 2**20 + held * per_frame + 64 * (w.frames_in + w.audio_packets_out)

    def ensure_space(self) -> None:
        """Raise OutputError when the output's disk has no room left to finish the video after another frame,
        while the encoder can still finish it (an MP4's index is written at the end). The sink calls it before
        each frame; :func:`~star_track.pipeline.process_video` also calls it before each frame's landmarks,
        so that every output ends on the same frame.

        The room is held, not just checked: :meth:`reserve_bytes` stay allocated past the end of the file
        (:class:`~star_track.output_files.SpaceReserve`), so neither the landmark file nor another program
        filling the disk can take it. Where the filesystem cannot reserve, that much free space is required
        instead; in both cases the run also stops while :data:`RESERVE_BYTES` are still free."""
        if self._writer is None:
            return
        need = self.reserve_bytes()
        held = self._reserve.ensure(need)  # True (nothing held) where the filesystem cannot reserve
        free = shutil.disk_usage(self._tmp.parent).free  # and some room for the landmark files
        if not held or free < (RESERVE_BYTES if self._reserve.supported else max(need, RESERVE_BYTES)):
            raise OutputError(f"{self.path}: No space left on device (stopped after {self.frames_written} frames; "
                             "the outputs are complete up to there)")
        self._space_checked = True

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
