"""Video output: :class:`VideoSink` writes H.264 (or another codec) with the input's audio, through PyAV, to a
hidden partial file that :meth:`VideoSink.close` moves into place."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import OutputError, VideoError
from .av_video import CODECS, AvWriter, encoder_options
from .claims import OutputClaim, partial_path
from .paths import check_output_path
from .reserve import SpaceReserve
from ..run.signals import deferred_signals

if TYPE_CHECKING:
    from .source import VideoSource

SINK_CODECS = {".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".mkv": "h264", ".avi": "mjpeg"}
"""Output extensions and the codec each gets by default (``codec=`` / ``--codec`` chooses another)."""


def check_video_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`check_output_path` plus a supported video extension (see :data:`SINK_CODECS`)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SINK_CODECS:
        raise OutputError(f"{p}: unsupported output extension {ext or '(none)'} "
                          f"(use one of {', '.join(sorted(SINK_CODECS))})")
    return check_output_path(p, overwrite)


RESERVE_BYTES = 4 * 2**20
"""Free space kept on the output disk during a run so that the video can still be finalised."""
MAX_SINK_FPS = 1000.0
"""Highest frame rate a :class:`VideoSink` accepts."""
MIN_SINK_FPS = 0.01
"""Lowest frame rate a :class:`VideoSink` accepts (one frame per 100 s; below it the time base degenerates)."""


class SinkArgumentError(VideoError, ValueError):
    """A :class:`VideoSink` argument out of range (``fps``, a frame's ``time``): a ValueError naming it."""


def _sink_fps(path: Path, fps: object) -> float:
    """``fps`` as a float in [:data:`MIN_SINK_FPS`, :data:`MAX_SINK_FPS`], else a SinkArgumentError."""
    try:
        rate = float(fps)  # type: ignore[arg-type]  # anything float() takes; the rest is the error below
    except (TypeError, ValueError):
        raise SinkArgumentError(f"{path}: invalid frame rate fps={fps!r} (a number)") from None
    # Also NaN; an infinite rate makes the encoder spin forever, a tiny one loses the video at close.
    if not (MIN_SINK_FPS <= rate <= MAX_SINK_FPS):
        raise SinkArgumentError(f"{path}: invalid frame rate fps={fps!r} (must be >= {MIN_SINK_FPS:g} "
                                f"and <= {MAX_SINK_FPS:g})")
    return rate


def sink_codec(path: str | os.PathLike, codec: str | None = None) -> str:
    """The codec a video written to ``path`` gets: ``codec``, else its extension's default (H.264; MJPEG for .avi)."""
    return codec or SINK_CODECS.get(Path(path).suffix.lower(), "h264")


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
        OutputError: unsupported extension, unwritable path, existing file without ``overwrite``, a full disk.
        VideoError: a codec setting the encoder does not take, or the encoder cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], overwrite: bool = False, *,
                 codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 audio_from: "VideoSource | None" = None):
        self.path = check_video_output(path, overwrite)
        self.fps = _sink_fps(self.path, fps)
        if len(size) != 2 or min(int(size[0]), int(size[1])) < 1:
            raise VideoError(f"{self.path}: invalid frame size {size}")
        ext = self.path.suffix.lower()
        self.codec = sink_codec(self.path, codec)
        if self.codec not in CODECS:
            raise VideoError(f"{self.path}: unknown codec {self.codec} (use one of {', '.join(CODECS)})")
        if ext == ".avi" and self.codec != "mjpeg":
            raise VideoError(f"{self.path}: .avi holds MJPEG only here (use .mp4, .mov or .mkv for {self.codec})")
        options = encoder_options(self.codec, crf, preset)
        self.size = (int(size[0]), int(size[1]))
        self.padded = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)
        """The encoded (even) size: ``size`` plus the repeated last column/row where ``size`` is odd."""
        self._claim = OutputClaim(self.path, overwrite)  # also removes stale partials of killed runs
        self._tmp = partial_path(self.path)
        self._source = audio_from
        self._writer: AvWriter | None = self._open_writer(options, audio_from)
        self.has_audio = self._writer.has_audio
        """True when the input's audio is being copied."""
        self.audio_transcoded = self._writer.audio_transcoded
        """True when the input's audio is re-encoded to AAC because the container cannot hold its codec."""
        self.frames_written = 0
        self._reserve = SpaceReserve(self._tmp)  # the header is written: the file exists
        self._space_checked = False  # ensure_space() ran for the next frame (process_video calls it first)
        try:
            self.ensure_space()
        except OutputError:
            self.close()
            raise

    def _open_writer(self, options: dict[str, str], audio_from: "VideoSource | None") -> AvWriter:
        """The encoder on the hidden partial file; on failure the partial file and the claim are gone."""
        reader = audio_from.reader if audio_from is not None else None
        try:
            return AvWriter(str(self._tmp), self.codec, self.fps, self.padded, options, reader,
                            audio_from.origin if audio_from is not None else 0.0)
        except (VideoError, OutputError) as e:
            self._tmp.unlink(missing_ok=True)
            self._claim.release()
            raise type(e)(f"{self.path}: {e}") from None

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Append one frame: uint8 (H, W) / (H, W, 1) gray, (H, W, 3) BGR or (H, W, 4) BGRA, shown at
        ``time`` seconds (default: ``frames_written / fps``; times must increase).

        Raises:
            ValueError: another dtype or channel count (the encoder would silently drop such frames).
        """
        if self._writer is None:
            raise OutputError(f"{self.path}: sink is closed")
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
        each frame; :func:`~star_track.run.loop.process_video` also calls it before each frame's landmarks,
        so that every output ends on the same frame.

        The room is held, not just checked: :meth:`reserve_bytes` stay allocated past the end of the file
        (:class:`~star_track.io.reserve.SpaceReserve`), so neither the landmark file nor another program
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
