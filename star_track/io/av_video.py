"""PyAV (FFmpeg) decoding and encoding behind :class:`~star_track.io.source.VideoSource` and
:class:`~star_track.io.sink.VideoSink`: container timestamps, H.264/HEVC/VP9/AV1/MPEG-4 output, audio copied.

FFmpeg's own log lines are off unless :func:`set_verbose` turned them on (``star-track --verbose``).
"""
from __future__ import annotations

import contextlib
import errno
from collections import deque
from fractions import Fraction
from typing import Any, Generator, cast

import av
import numpy as np
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from ..errors import OutputError, VideoError

CODECS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "mpeg4": "mpeg4",
          "mjpeg": "mjpeg"}
"""``--codec`` name -> FFmpeg encoder."""
AV1_PRESETS = range(0, 14)
"""SVT-AV1's ``--preset`` numbers (x264/x265 take the names in :data:`X26X_PRESETS`)."""
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
TIME_BASE = Fraction(1, 60000)
"""Output video time base: fine enough for any frame time, within MPEG-4 Part 2's limit (denominator < 65536)."""
_AUDIO_HOLD = 4096
"""Audio packets kept while no sink has asked for them (a few minutes of AAC); then they are dropped."""


def set_verbose(on: bool) -> None:
    """Let FFmpeg's log lines through to stderr (``--verbose``) or keep them hidden (the default)."""
    av.logging.set_level(av.logging.INFO if on else None)


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.split(": '")[0] if text else type(e).__name__


def display_transform(matrix) -> tuple[bool, bool, bool]:
    """``(transpose, flip_x, flip_y)`` that turn a coded frame into its displayed orientation, from FFmpeg's
    display matrix (9 int32, ``AV_FRAME_DATA_DISPLAYMATRIX``), snapped to the nearest quarter turn.

    FFmpeg maps a coded point (p, q) to (m0 p + m3 q, m1 p + m4 q) on display; the result matches ``ffmpeg``'s
    own autorotation for all eight orientations (rotations by 0/90/180/270 degrees, each also mirrored)."""
    m0, m1, m3, m4 = (float(matrix[i]) for i in (0, 1, 3, 4))
    if abs(m0) + abs(m4) >= abs(m1) + abs(m3):
        return False, m0 < 0, m4 < 0
    return True, m3 < 0, m1 < 0


def apply_transform(image: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
    """``image`` transposed and/or mirrored as :func:`display_transform` says (a contiguous copy when changed)."""
    transpose, flip_x, flip_y = transform
    if not (transpose or flip_x or flip_y):
        return image
    if transpose:
        image = image.swapaxes(0, 1)
    if flip_x:
        image = image[:, ::-1]
    if flip_y:
        image = image[::-1]
    return np.ascontiguousarray(image)


PIPE_HINT = ("cannot decode it from a pipe (empty, not a video, or a format that needs seeking, such as an MP4/MOV "
             "with its index at the end: pipe .mkv/.ts, or give the file)")
"""Why a FIFO / process-substitution input gave nothing: a pipe cannot be seeked."""


class AvReader:
    """Decoded BGR frames with their presentation times, and the audio packets read along the way.

    Frames come in display geometry: non-square pixels are resampled to square ones (the longer displayed
    side kept, so no detail is lost) and the stream's display matrix (a phone's rotation) is applied. Both
    are decided on the first frame and kept for the whole stream, so every frame has one size.
    """

    def __init__(self, target: str, name: str, fmt: str | None = None, live: bool = False, pipe: bool = False):
        self.name = name
        self.pipe = pipe
        options = {"rtsp_transport": "tcp"} if target.startswith("rtsp://") else {}
        try:
            self.container = av.open(target, format=fmt, options=options, timeout=(10.0, 10.0))
        except av.FFmpegError as e:
            what = "cannot open the stream" if live else "not a video FFmpeg can decode (unknown format, or truncated/corrupt)"
            if pipe:
                what = PIPE_HINT
            raise VideoError(f"{name}: {what}: {_reason(e)}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{name}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.audio_packets: deque = deque()
        self.audio_wanted: bool | None = None  # None: undecided (kept, up to _AUDIO_HOLD packets)
        self._frames = self._decode()
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.rate = float(rate) if rate else 0.0
        self.frame_count = int(self.stream.frames or 0)
        sar = self.stream.sample_aspect_ratio
        self.sample_aspect_ratio = sar if sar and sar > 0 else Fraction(1)
        """Pixel width / height of the coded frames (1: square); frames are resampled to square pixels."""
        self.transform: tuple[bool, bool, bool] | None = None
        """``(transpose, flip_x, flip_y)`` applied to every frame (see :func:`display_transform`); set on the
        first frame."""
        self.rotation = 0
        """Counter-clockwise degrees of the stream's display matrix (as ffprobe reports; 0: none)."""

    def _upright(self, frame: Any) -> np.ndarray:  # av.VideoFrame (its stubs miss side_data's items)
        """The frame as BGR in display geometry: square pixels, then the display matrix applied."""
        if self.transform is None:
            self.transform = (False, False, False)
            for data in frame.side_data:
                if data.type.name == "DISPLAYMATRIX" and data.buffer_size >= 36:
                    self.transform = display_transform(np.frombuffer(bytes(data), "<i4", 9))
                    self.rotation = int(round(frame.rotation or 0))
        sar = self.sample_aspect_ratio
        if sar == 1:
            image = frame.to_ndarray(format="bgr24")
        else:  # stretch, never squeeze: the longer displayed side keeps its pixels
            w = max(1, round(frame.width * sar)) if sar > 1 else frame.width
            h = frame.height if sar > 1 else max(1, round(frame.height / sar))
            image = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="BICUBIC")
        return apply_transform(image, self.transform)

    def _decode(self) -> Generator[tuple[float | None, np.ndarray], None, None]:
        streams = [self.stream] + ([self.audio] if self.audio is not None else [])
        try:
            for packet in self.container.demux(*streams):
                if packet.stream.type == "audio":
                    self._keep_audio(packet)
                    continue
                try:
                    decoded = packet.decode()
                except av.FFmpegError:  # a damaged packet: skip it, keep the rest
                    continue
                for frame in cast("list[av.VideoFrame]", decoded):  # a video stream's packets
                    yield frame.time, self._upright(frame)
        except (av.FFmpegError, OSError):  # truncated file, dropped stream: the frames so far stand
            return

    def _keep_audio(self, packet) -> None:
        if packet.dts is None or packet.size == 0 or self.audio_wanted is False:
            return
        self.audio_packets.append(packet)
        if self.audio_wanted is None and len(self.audio_packets) > _AUDIO_HOLD:
            self.audio_packets.popleft()

    def read(self) -> tuple[float | None, np.ndarray] | None:
        """The next (time in s or None, BGR image), or None at the end."""
        return next(self._frames, None)

    def close(self) -> None:
        self._frames.close()
        self.container.close()
        self.audio_packets.clear()


def encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    """FFmpeg options for ``--crf``/``--preset``; VideoError when the codec has no such setting."""
    opts: dict[str, str] = {}
    if crf is not None:
        limit = 63 if codec in ("vp9", "av1") else 51
        if codec not in ("h264", "hevc", "vp9", "av1") or not 0 <= crf <= limit:
            raise VideoError(f"--crf {crf}: use 0..51 with h264/hevc, 0..63 with vp9/av1"
                             + ("" if codec in ("h264", "hevc", "vp9", "av1") else f" (not {codec})"))
        opts["crf"] = str(crf)
        if codec == "vp9":
            opts["b"] = "0"  # constant quality
    if preset is not None:
        if codec in ("h264", "hevc") and preset in X26X_PRESETS:
            opts["preset"] = preset
        elif codec == "av1" and preset.isdigit() and int(preset) in AV1_PRESETS:
            opts["preset"] = preset
        else:
            raise VideoError(f"--preset {preset}: use one of {', '.join(X26X_PRESETS)} with h264/hevc, "
                             f"0..13 with av1 (codec here: {codec})")
    return opts


class AvWriter:
    """Encodes BGR frames at given times into ``path`` (its extension picks the container) and copies the
    audio packets of an :class:`AvReader` up to the last frame written (to the end when the reader ended).

    The container's header is written when the writer is made, so a stream the muxer cannot hold is found
    before any frame is processed: an audio codec the container refuses (e.g. Opus in ``.mov``) is then
    re-encoded to AAC (:attr:`audio_transcoded`)."""

    def __init__(self, path: str, codec: str, fps: float, size: tuple[int, int], options: dict[str, str],
                 audio_from: AvReader | None = None, audio_origin: float = 0.0):
        self.cfr = codec == "mjpeg"  # AVI: constant rate, frame-numbered
        self.fps = fps
        self.size = size
        self.frames_in = 0
        """Frames given to the encoder."""
        self.packets_out = 0
        """Video packets the encoder has returned (``frames_in - packets_out``: frames it still holds)."""
        self.max_packet = 0
        """Largest video packet so far (bytes)."""
        self.audio_packets_out = 0
        self._audio_in = audio_from
        self._audio_out: AudioStream | None = None
        self._transcode: AudioResampler | None = None
        has_audio = audio_from is not None and audio_from.audio is not None
        try:
            self._open(path, codec, fps, size, options, audio_from if has_audio else None, force_aac=False)
            try:
                self.container.start_encoding()  # the header: the real muxer judges every stream now
            except av.FFmpegError:
                if not has_audio or self._transcode is not None:
                    raise
                with contextlib.suppress(Exception):
                    self.container.close()
                self._open(path, codec, fps, size, options, audio_from, force_aac=True)
                self.container.start_encoding()
        except (av.FFmpegError, ValueError, OSError) as e:
            with contextlib.suppress(Exception):
                self.container.close()
            if getattr(e, "errno", None) == errno.ENOSPC:
                raise OutputError("No space left on device") from None
            raise VideoError(f"cannot open a {codec} encoder for {size[0]}x{size[1]} ({_reason(e)})") from None
        if has_audio:
            assert audio_from is not None and audio_from.audio is not None
            audio_from.audio_wanted = True
            tb = audio_from.audio.time_base
            self._shift = int(round(audio_origin / tb)) if tb else 0
        self._negative_ok = "mp4" in self.container.format.name or "mov" in self.container.format.name
        self._last_pts = -1
        self._end_time = 0.0

    @property
    def has_audio(self) -> bool:
        """True when the reader's audio goes into the output (copied or re-encoded)."""
        return self._audio_out is not None

    @property
    def audio_transcoded(self) -> bool:
        """True when the input's audio is re-encoded to AAC (the container cannot hold its codec)."""
        return self._transcode is not None

    def _open(self, path: str, codec: str, fps: float, size: tuple[int, int], options: dict[str, str],
              audio_from: AvReader | None, force_aac: bool) -> None:
        self.container = av.open(path, "w")
        rate = Fraction(fps).limit_denominator(1001000)
        self.stream = cast(VideoStream, self.container.add_stream(CODECS[codec], rate=rate, options=options))
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        self.stream.codec_context.time_base = 1 / rate if self.cfr else TIME_BASE
        self.stream.time_base = self.stream.codec_context.time_base
        self.stream.codec_context.open()
        self._audio_out, self._transcode = None, None
        if audio_from is not None and audio_from.audio is not None:
            self._audio_out, self._transcode = self._add_audio(audio_from.audio, force_aac)

    def _add_audio(self, src: AudioStream, force_aac: bool = False
                   ) -> tuple[AudioStream, AudioResampler | None]:
        """The output audio stream: a copy of ``src``'s, or AAC with the resampler that feeds it."""
        name = src.codec_context.name
        if not force_aac and name in self.container.supported_codecs:  # copied as is
            return cast(AudioStream, self.container.add_stream_from_template(src)), None
        out = cast(AudioStream, self.container.add_stream("aac", rate=src.codec_context.sample_rate or 48000))
        return out, AudioResampler(format=out.codec_context.format, layout=out.codec_context.layout,
                                      rate=out.codec_context.sample_rate)

    def write(self, image: np.ndarray, time: float) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        pts = self._last_pts + 1 if self.cfr else max(int(round(time / TIME_BASE)), self._last_pts + 1)
        frame.pts, frame.time_base = pts, self.stream.codec_context.time_base
        self._last_pts = pts
        self._end_time = float(pts * frame.time_base) + 1.0 / self.fps
        packets = self.stream.encode(frame)
        self.frames_in += 1
        self.packets_out += len(packets)
        self.max_packet = max([self.max_packet, *(p.size for p in packets)])
        self._mux(packets)
        self._copy_audio(self._end_time)

    def _mux(self, packets) -> None:
        try:
            self.container.mux(packets)
        except av.FFmpegError as e:
            if getattr(e, "errno", None) == errno.ENOSPC:
                raise OSError(errno.ENOSPC, "No space left on device") from None
            raise

    def _copy_audio(self, until: float | None) -> None:
        """Mux the reader's audio packets that start before ``until`` seconds of output time (None: all)."""
        reader = self._audio_in
        if self._audio_out is None or reader is None or reader.audio is None:
            return
        queue, tb = reader.audio_packets, reader.audio.time_base
        while queue:
            p = queue[0]
            start = (p.pts if p.pts is not None else p.dts) - self._shift
            if until is not None and start * tb >= until:
                break
            queue.popleft()
            if start < 0 and not self._negative_ok:  # encoder priming before the first frame: MP4/MOV keep
                continue  # it in an edit list; other containers would shift every timestamp to make room
            if self._transcode is not None:
                self._encode_audio(p, start)
                continue
            p.pts = None if p.pts is None else p.pts - self._shift
            p.dts = p.dts - self._shift
            p.stream = self._audio_out
            self._mux(p)
            self.audio_packets_out += 1

    def _encode_audio(self, packet: av.Packet, start: int) -> None:
        assert self._transcode is not None and self._audio_out is not None  # only called when re-encoding
        try:
            frames = packet.decode()
        except av.FFmpegError:
            return
        for f in frames:
            if start < 0:
                continue
            f.pts = None
            for r in self._transcode.resample(cast(av.AudioFrame, f)):
                packets = self._audio_out.encode(r)
                self.audio_packets_out += len(packets)
                self._mux(packets)

    def close(self, source_ended: bool) -> None:
        """Copy the remaining audio (all of it when the source ended, else up to the last frame), flush the
        encoders and write the container's index."""
        try:
            self._copy_audio(None if source_ended else self._end_time)
            self._mux(self.stream.encode(None))
            if self._transcode is not None and self._audio_out is not None:
                self._mux(self._audio_out.encode(None))
        finally:
            self.container.close()

