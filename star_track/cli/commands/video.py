"""``star-track video`` (a file, stream or device into an annotated video and/or a landmark file) and
``star-track webcam`` (live, in a window).

The SDK is imported inside the commands: ``star-track --help`` and a usage error stay fast and load no model
runtime.
"""
from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from ...run.signals import StopFlag
from ..exits import error_boundary, fail
from ..options import Codec, TrackerOptions, tracker_options
from ..outputs import STDOUT, check_encoding, check_outputs, close_all, report_nonfinite

if TYPE_CHECKING:
    from ...io.landmarks import LandmarkWriter
    from ...io.sink import VideoSink
    from ...io.source import VideoSource
    from ...run.loop import VideoSummary
    from ...tracking.tracker import Tracker


@tracker_options("smoothing", "model", "engine", "max_faces", "detector", "detect_every", "output_68", "flip_test",
                 "threads", "no_analysis", "focal", "camera", "lookahead")
def video(
    input: str = typer.Argument(..., help="Input video file, stream URL (rtsp://, http(s)://) or device path."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output video (.mp4, .mov, .mkv: H.264 by "
                                       "default; .avi: MJPEG), with the input's audio."),
    landmarks_out: Optional[Path] = typer.Option(None, "--landmarks-out", "-l",
                                                 help="Landmarks file: .csv, .json, .npz or .parquet; - for CSV "
                                                 "on stdout."),
    codec: Optional[Codec] = typer.Option(None, "--codec", help="Output video codec (default h264)."),
    crf: Optional[int] = typer.Option(None, "--crf", help="Constant quality: lower is better and bigger "
                                      "(h264/hevc 0-51, default 23/28; vp9/av1 0-63)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Encoder speed: ultrafast..veryslow "
                                         "(h264/hevc), 0-13 (av1)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Leave the input's audio out of the output video."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    no_draw: bool = typer.Option(False, "--no-draw", help="Write the frames without annotations."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw each landmark's 2-sigma uncertainty ellipse."),
    pose: bool = typer.Option(False, "--pose", help="Draw each face's head axes (x red, y green, z blue)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Track faces in a video file or stream; write an annotated video and/or a landmarks file."""
    if out is None and landmarks_out is None:
        raise fail(f"{input}: nothing to write: give --out and/or --landmarks-out", 2)
    check_encoding(out, "--out", codec.value if codec else None, crf, preset)
    from ...io.source import VideoSource
    from ...run.loop import process_video

    sink: VideoSink | None = None
    writer: LandmarkWriter | None = None
    stop = StopFlag(hold=True)  # signals stay recorded (deferred) from the loop until every output is closed
    with error_boundary(input):
        # Outputs are checked before any work so a bad path never costs a full run.
        check_outputs(input, [(out, "video"), (landmarks_out, "landmarks")], overwrite)
        source = VideoSource(input)
        try:
            tracker = tracker_options.tracker(fps=source.fps)
            with tracker:
                if out is not None:
                    sink = _sink(out, source, overwrite, codec=codec.value if codec else None, crf=crf,
                                 preset=preset, audio_from=None if no_audio else source)
                writer = _landmark_writer(landmarks_out, source, tracker, overwrite)
                summary = process_video(source, tracker, sink=sink, landmark_writer=writer, draw=not no_draw,
                                        ellipses=ellipses, pose=pose, progress=progress, label=Path(input).name, stop=stop)
        finally:
            with stop.deferring():  # a second Ctrl-C or a SIGTERM cannot cut the video's finishing short
                source.close()
                close_all(sink, writer)
    report_nonfinite(tracker, Path(input).name)
    _report(input, [out, landmarks_out], source, summary, stop)


def _sink(out: Path, source: "VideoSource", overwrite: bool, **options: Any) -> "VideoSink":
    """The output video, with a note when an odd size has to be padded."""
    from ...io.sink import VideoSink

    sink = VideoSink(out, source.fps, source.size, overwrite=overwrite, **options)
    if sink.padded != sink.size:
        typer.echo(f"star-track: note: {source.width}x{source.height} is odd-sized: the video is padded to "
                   f"{sink.padded[0]}x{sink.padded[1]} (last column/row repeated; nothing cropped)", err=True)
    return sink


def _landmark_writer(path: Optional[Path], source: "VideoSource", tracker: "Tracker",
                     overwrite: bool) -> "LandmarkWriter | None":
    """The landmark file ``path`` names: a file, CSV on stdout (``-``), or none."""
    from ...io.landmarks import CsvLandmarkWriter, open_landmark_writer

    if path is None:
        return None
    if str(path) == STDOUT:
        return CsvLandmarkWriter(Path("<stdout>"), tracker.scheme.num_points, tracker.scheme.name, source.fps,
                                 stream=typer.get_binary_stream("stdout"))
    return open_landmark_writer(path, tracker.scheme.num_points, tracker.scheme.name, source.fps,
                                overwrite=overwrite)


def blink_note(blinks: dict[int, int]) -> str:
    """``"; blinks: #0 4, #2 1"`` (per track) for the summary line, or ``""`` when there was none."""
    return "; blinks: " + ", ".join(f"#{k} {n}" for k, n in sorted(blinks.items())) if blinks else ""


def _report(input: str, outputs: list[Optional[Path]], source: "VideoSource", summary: "VideoSummary",
            stop: StopFlag) -> None:
    """The run's last lines: a truncated input, a signal (then exit 130/143), the frames written, no face."""
    if summary.ended_early and stop.signum is None:
        typer.echo(f"star-track: warning: {input}: the file ended early (truncated or damaged?): read "
                   f"{source.frames_read} of the {source.frame_count} frames its container lists; the results "
                   "cover those frames", err=True)
    frames = summary.frames
    targets = ", ".join("stdout" if str(p) == STDOUT else str(p) for p in outputs if p is not None)
    if stop.signum is not None:  # also a signal that came while the outputs were closed
        name = signal.Signals(stop.signum).name
        typer.echo(f"star-track: {name}: stopped after {frames} frames; wrote {frames} frames to {targets}",
                   err=True)
        raise typer.Exit(stop.exit_code)
    to_stdout = any(p is not None and str(p) == STDOUT for p in outputs)  # stdout carries the landmarks then
    typer.echo(f"wrote {frames} frames to {targets} ({summary.fps:.1f} fps overall); faces in "
               f"{summary.frames_with_faces} of them{blink_note(summary.blinks)}", err=to_stdout)
    if frames and not summary.frames_with_faces:
        typer.echo(f"star-track: warning: {Path(input).name}: no face found in any frame", err=True)


@tracker_options("smoothing", "model", "engine", "max_faces", "detector", "detect_every", "flip_test", "threads",
                 "no_analysis", "focal", "lookahead", lookahead=(int, typer.Option(
                     0, "--lookahead", min=0, metavar="FRAMES", help="Revise each frame with the next FRAMES before "
                     "showing it: steadier, the window FRAMES frames behind the camera (default 0; 1-3 with "
                     "--smoothing face, see README Smoothing).")))
def webcam(
    camera: str = typer.Option("0", "--camera", "-c", help="Camera index (0, 1, ...), device path "
                               "(/dev/video0) or stream URL (rtsp://, http(s)://)."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw uncertainty ellipses."),
    pose: bool = typer.Option(False, "--pose", help="Draw each face's head axes."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Live tracking from a camera in a window (q or Esc quits)."""
    import cv2

    from ...draw import draw_faces
    from ...io.display import require_display
    from ...io.source import VideoSource, camera_source
    from ...run.loop import process_video

    stop = StopFlag()
    label = f"camera {camera}"
    with error_boundary(label):
        require_display()  # before the camera: cv2.imshow would abort the process (Qt) without one
        spec = camera_source(camera)  # a negative index never reaches OpenCV (it segfaults there)
        label = f"camera {spec}" if isinstance(spec, int) else str(camera)
        source = VideoSource(spec)
        try:
            tracker = tracker_options.tracker(fps=source.fps)
            window = "star-track (q to quit)"
            rate = {"fps": 0.0, "last": time.perf_counter(), "frames": 0}

            def show(vf, faces) -> bool:  # the window's fps: real frame-to-frame time, waiting for the camera too
                now = time.perf_counter()
                inst = 1.0 / max(now - rate["last"], 1e-6)
                rate["fps"] = inst if rate["frames"] == 0 else 0.9 * rate["fps"] + 0.1 * inst
                rate["last"], rate["frames"] = now, rate["frames"] + 1
                cv2.imshow(window, draw_faces(vf.image, faces, tracker.scheme, ellipses=ellipses, fps=rate["fps"],
                                                  pose=pose))
                return cv2.waitKey(1) & 0xFF in (ord("q"), 27)

            with tracker:  # ends cleanly when the camera disconnects; capture times: real gaps when frames are slow
                summary = process_video(source, tracker, on_frame=show, stop=stop)
        finally:
            source.close()
            with contextlib.suppress(Exception):
                cv2.destroyAllWindows()
    typer.echo(f"processed {summary.frames} frames from {label}")
    if summary.interrupted:
        raise typer.Exit(stop.exit_code)
