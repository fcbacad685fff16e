"""``star-track`` command line: a thin layer over the SDK (video, webcam, image, info, models).

Every failure is reported as one line on stderr naming the input and the reason, with a non-zero exit code
(1 = error, 2 = bad usage, 130 = interrupted by SIGINT, 143 = terminated by SIGTERM); no tracebacks.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

import typer

from .run.signals import SIGNAL_EXIT, Interrupted, StopFlag, install_handlers, interrupted_by
from .cli_options import OPTIONS, TrackerOptions, tracker_options

app = typer.Typer(name="star-track", help="Real-time facial landmark tracking with STAR uncertainty.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="List and manage landmark models.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks (the full suite: python -m benchmarks).", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(bench_app, name="bench")

EXIT_ERROR = 1
_REAL_STDERR: int | None = None
"""While :func:`main` keeps native logs off the terminal: the descriptor of the real stderr (else None)."""


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"star-track {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(verbose: bool = typer.Option(False, "--verbose", help="Also show the native libraries' "
                                                 "own log lines (FFmpeg, OpenCV, LiteRT)."),
                    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                                 help="Print the version and exit.")) -> None:
    """Real-time facial landmark tracking with STAR uncertainty."""
    if verbose:
        from .io.av_video import set_verbose

        set_verbose(True)  # FFmpeg's log lines through PyAV (they are off by default)
    if verbose and _REAL_STDERR is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            os.dup2(_REAL_STDERR, 2)


class Codec(str, Enum):
    """Video codecs ``--codec`` accepts."""

    h264 = "h264"
    hevc = "hevc"
    vp9 = "vp9"
    av1 = "av1"
    mpeg4 = "mpeg4"


STDOUT = "-"
"""``--landmarks-out -``: landmarks to stdout (CSV for video, JSON for image)."""


def fail(message: str, code: int = EXIT_ERROR, prog: str = "star-track") -> typer.Exit:
    """Print ``PROG: error: message`` (one line) to stderr and return the Exit to raise: the one error style
    of ``star-track``, ``python -m train`` and ``python -m export``."""
    text = " ".join(str(message).split())
    typer.echo(f"{prog}: error: {text}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def error_boundary(subject: str) -> Iterator[None]:
    """Turn any exception into one stderr line mentioning ``subject`` (a :class:`StarTrackError` already names
    it)."""
    from .errors import OutputClosed, StarTrackError

    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except OutputClosed as e:  # `... -l - | head`: the reader has what it wanted; not an error
        _detach_stdout()
        typer.echo(f"star-track: note: stdout was closed by its reader; stopped ({e}); the other outputs hold "
                   "the frames written until then", err=True)
        raise typer.Exit(0) from None
    except StarTrackError as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt:  # a second Ctrl-C while StopFlag waits for the frame to finish
        raise fail(f"{subject}: interrupted", 130) from None
    except Interrupted as e:
        raise fail(f"{subject}: {e.word}", e.exit_code) from None
    except ValueError as e:
        raise fail(f"{subject}: {e}") from None
    except MemoryError:
        raise fail(f"{subject}: out of memory") from None
    except Exception as e:  # the boundary: never a traceback
        hit = interrupted_by(e)  # e.g. RuntimeError "Error calling __set_name__" around the signal
        if hit is not None:
            raise fail(f"{subject}: {hit.word}", hit.exit_code) from None
        raise fail(f"{subject}: {type(e).__name__}: {e}") from None


def _detach_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so nothing (not even the flush at exit) writes to the
    closed pipe again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _check_outputs(input: str, outputs: list[tuple[Optional[Path], str]], overwrite: bool) -> None:
    """Validate every output (kind ``video``, ``image`` or ``landmarks``) before any work or any write."""
    from .errors import OutputError
    from .io.claims import input_paths, same_file
    from .io.images import check_image_output
    from .io.landmarks import check_landmarks_path
    from .io.sink import check_video_output

    checks = {"video": check_video_output, "image": check_image_output, "landmarks": check_landmarks_path}
    sources = input_paths(input)  # a file: URL names a local file too
    given = [(p, kind) for p, kind in outputs if p is not None and str(p) != STDOUT]
    for p, kind in given:
        checks[kind](p, overwrite)
        # Checked even with --overwrite: replacing the input would destroy it (it is read while writing). The
        # same file by device and inode: a hard link or another spelling of the path counts.
        if any(same_file(p, src) for src in sources):
            raise OutputError(f"{p}: output would overwrite the input")
    if len(given) == 2 and (os.path.realpath(given[0][0]) == os.path.realpath(given[1][0])
                            or same_file(given[0][0], given[1][0])):
        raise OutputError(f"{given[0][0]}: --out and --landmarks-out are the same file")


@app.command()
@tracker_options("smoothing", "model", "engine", "max_faces", "detector", "detect_every", "output_68", "flip_test",
                 "threads")
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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Track faces in a video file or stream; write an annotated video and/or a landmarks file."""
    if out is None and landmarks_out is None:
        raise fail(f"{input}: nothing to write: give --out and/or --landmarks-out", 2)
    if out is None and (codec is not None or crf is not None or preset is not None):
        used = [n for n, v in (("--codec", codec), ("--crf", crf), ("--preset", preset)) if v is not None]
        raise fail(f"{' and '.join(used)} set the output video's encoding: give --out too (or leave them out)", 2)
    from .io.landmarks import CsvLandmarkWriter, LandmarkWriter, open_landmark_writer
    from .run.loop import process_video
    from .io.sink import VideoSink
    from .io.source import VideoSource

    to_stdout = landmarks_out is not None and str(landmarks_out) == STDOUT
    say = (lambda m: typer.echo(m, err=True)) if to_stdout else typer.echo  # stdout carries the landmarks
    sink: VideoSink | None = None
    writer: LandmarkWriter | None = None
    stop = StopFlag(hold=True)  # signals stay recorded (deferred) from the loop until every output is closed
    with error_boundary(input):
        # Outputs are checked before any work so a bad path never costs a full run.
        _check_outputs(input, [(out, "video"), (landmarks_out, "landmarks")], overwrite)
        source = VideoSource(input)
        try:
            tracker = tracker_options.tracker(fps=source.fps)
            with tracker:
                if out is not None:
                    sink = VideoSink(out, source.fps, source.size, overwrite=overwrite,
                                     codec=codec.value if codec else None, crf=crf, preset=preset,
                                     audio_from=None if no_audio else source)
                    if sink.padded != sink.size:
                        typer.echo(f"star-track: note: {source.width}x{source.height} is odd-sized: the video is "
                                   f"padded to {sink.padded[0]}x{sink.padded[1]} (last column/row repeated; "
                                   "nothing cropped)", err=True)
                if to_stdout:
                    writer = CsvLandmarkWriter(Path("<stdout>"), tracker.scheme.num_points, tracker.scheme.name,
                                               source.fps, stream=typer.get_binary_stream("stdout"))
                elif landmarks_out is not None:
                    writer = open_landmark_writer(landmarks_out, tracker.scheme.num_points, tracker.scheme.name,
                                                  source.fps, overwrite=overwrite)
                summary = process_video(source, tracker, sink=sink, landmark_writer=writer, draw=not no_draw,
                                        ellipses=ellipses, progress=progress, label=Path(input).name, stop=stop)
        finally:
            with stop.deferring():  # a second Ctrl-C or a SIGTERM cannot cut the video's finishing short
                source.close()
                _close_all(sink, writer)
    _report_nonfinite(tracker, Path(input).name)
    if summary.ended_early and stop.signum is None:
        typer.echo(f"star-track: warning: {input}: the file ended early (truncated or damaged?): read "
                   f"{source.frames_read} of the {source.frame_count} frames its container lists; the results "
                   "cover those frames", err=True)
    frames = summary.frames
    targets = ", ".join("stdout" if str(p) == STDOUT else str(p) for p in (out, landmarks_out) if p is not None)
    if stop.signum is not None:  # also a signal that came while the outputs were closed
        name = signal.Signals(stop.signum).name
        typer.echo(f"star-track: {name}: stopped after {frames} frames; wrote {frames} frames to {targets}",
                   err=True)
        raise typer.Exit(stop.exit_code)
    say(f"wrote {frames} frames to {targets} ({summary.fps:.1f} fps overall); "
        f"faces in {summary.frames_with_faces} of them")
    if frames and not summary.frames_with_faces:
        typer.echo(f"star-track: warning: {Path(input).name}: no face found in any frame", err=True)


class LandmarksFormat(str, Enum):
    """Landmark file formats ``batch --landmarks-format`` accepts."""

    csv = "csv"
    json = "json"
    npz = "npz"
    parquet = "parquet"


@app.command()
@tracker_options("smoothing", "model", "engine", "max_faces", "detector", "detect_every", "output_68", "flip_test",
                 "threads")
def batch(
    inputs: list[str] = typer.Argument(..., help="Videos, folders (searched for videos), glob patterns, or "
                                       ".txt/.csv lists of paths."),
    out_dir: Path = typer.Option(..., "--out-dir", "-d", help="Output folder: mirrors the input tree, plus "
                                 "manifest.jsonl."),
    landmarks_format: LandmarksFormat = typer.Option(LandmarksFormat.csv, "--landmarks-format", "-f",
                                                     help="Landmarks file format."),
    annotated: bool = typer.Option(False, "--video/--no-video", help="Also write NAME.annotated.mp4."),
    codec: Optional[Codec] = typer.Option(None, "--codec", help="Annotated video codec (default h264)."),
    crf: Optional[int] = typer.Option(None, "--crf", help="Annotated video constant quality."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Leave the input's audio out of annotated videos."),
    no_draw: bool = typer.Option(False, "--no-draw", help="Annotated videos without annotations."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw 2-sigma uncertainty ellipses."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Worker processes (default: the "
                                          "cores / --threads, so N workers x 1 engine thread)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run on Ray: 'local' (start a local runtime), 'auto' "
                                      "(the running cluster, e.g. under `ray job submit`) or ray://HOST:10001. "
                                      'Needs pip install "star-track\\[cluster]".'),
    ray_gpus: Optional[float] = typer.Option(None, "--ray-gpus", min=0, help="GPUs per Ray task (default 1 for "
                                             "the tensorrt and torch engines, else 0)."),
    max_retries: int = typer.Option(2, "--max-retries", min=0, help="Ray retries of a task whose worker died."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Track every video of INPUTS into --out-dir: resumable (done videos are skipped), one failed video never
    stops the batch, local worker processes or a Ray cluster. Exit code 1 when any video failed."""
    from rich.console import Console

    from .run.batch import run_batch, summary_table

    if not annotated and (codec is not None or crf is not None):
        used = [n for n, v in (("--codec", codec), ("--crf", crf)) if v is not None]
        raise fail(f"{' and '.join(used)} set the annotated videos' encoding: give --video too (or leave them "
                   "out)", 2)
    o = tracker_options
    from dataclasses import replace

    from .tracker import capped_threads

    threads, note = capped_threads(o.threads)  # per worker: capped at the cores, said once here
    if note is not None:
        typer.echo(f"star-track: note: --{note.replace('=', ' ', 1)}", err=True)
    o = replace(o, threads=threads)
    tracker_kwargs = {"model": o.model, "engine": o.engine, "smoothing": o.smoothing, "max_faces": o.max_faces,
                      "detect_every": o.detect_every, "detector": o.detector,
                      "output_scheme": "68" if o.output_68 else None, "flip_test": o.flip_test,
                      "threads": o.threads or 1}
    video_options = {"codec": codec.value if codec else None, "crf": crf, "audio": not no_audio,
                     "draw": not no_draw, "ellipses": ellipses}
    with error_boundary(str(out_dir)):
        rows = run_batch(inputs, out_dir, workers=workers, ray_address=ray, tracker_kwargs=tracker_kwargs,
                         landmarks_format=landmarks_format.value, annotated_video=annotated,
                         video_options=video_options, max_retries=max_retries, num_gpus=ray_gpus,
                         progress=progress, on_warning=lambda m: typer.echo(f"star-track: warning: {m}", err=True))
    Console(stderr=False, width=max(100, Console().width)).print(summary_table(rows))
    if rows.signal is not None:
        typer.echo(f"star-track: {signal.Signals(rows.signal).name}: batch stopped; rerun the same command to "
                   "finish it", err=True)
        raise typer.Exit(SIGNAL_EXIT.get(rows.signal, 130))
    if rows.failed:
        raise typer.Exit(EXIT_ERROR)


def _close_all(*outputs) -> None:
    """Close every output even when one of them fails (the first failure is raised after all are closed)."""
    first: Exception | None = None
    for out in outputs:
        if out is None:
            continue
        try:
            out.close()
        except Exception as e:  # noqa: BLE001 - re-raised below
            first = first or e
    if first is not None:
        raise first


def _report_nonfinite(tracker, subject: str) -> None:
    """One warning line when the model's output was NaN/inf for some faces (they were left out)."""
    n = getattr(tracker, "nonfinite_faces", 0)
    if n:
        typer.echo(f"star-track: warning: {subject}: {n} face(s) left out: the model returned non-finite "
                   "landmarks", err=True)


@app.command()
@tracker_options("smoothing", "model", "engine", "max_faces", "detector", "detect_every", "flip_test", "threads")
def webcam(
    camera: str = typer.Option("0", "--camera", "-c", help="Camera index (0, 1, ...), device path "
                               "(/dev/video0) or stream URL (rtsp://, http(s)://)."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw uncertainty ellipses."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Live tracking from a camera in a window (q or Esc quits)."""
    import cv2

    from .draw import draw_faces
    from .run.loop import process_video
    from .io.display import require_display
    from .io.source import VideoSource, camera_source

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
                cv2.imshow(window, draw_faces(vf.image, faces, tracker.scheme, ellipses=ellipses, fps=rate["fps"]))
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


_IMAGE_MAX_FACES = (Optional[int], typer.Option(None, "--max-faces", min=1, help="Most faces returned "
                                                 "(default: all)."))


@app.command()
@tracker_options("model", "engine", "max_faces", "detector", "output_68", "flip_test", "threads",
                 max_faces=_IMAGE_MAX_FACES)
def image(
    input: str = typer.Argument(..., help="Input image."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Annotated output image."),
    landmarks_out: Optional[Path] = typer.Option(None, "--landmarks-out", "-l", help="Landmarks "
                                                 ".csv/.json/.npz/.parquet; without -o and -l (or with -l -) "
                                                 "the faces are printed as JSON on stdout."),
    single_pass: bool = typer.Option(False, "--single-pass", help="One whole-image detector pass (fast, as in video) "
                                     "instead of photo mode's tiles and rolled passes: misses small and rolled faces."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw uncertainty ellipses."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Landmarks of every face in a single image (photo mode: small and rolled faces too)."""
    to_stdout = landmarks_out is not None and str(landmarks_out) == STDOUT or (out is None and landmarks_out is None)
    if to_stdout:
        landmarks_out = None

    from .draw import draw_faces
    from .io.images import read_image, write_image
    from .io.landmarks import faces_document, open_landmark_writer
    from .io.claims import write_exclusive

    with error_boundary(input):
        _check_outputs(input, [(out, "image"), (landmarks_out, "landmarks")], overwrite)
        img = read_image(input)  # EXIF orientation applied: landmarks in display coordinates
        max_faces = tracker_options.max_faces
        tracker = tracker_options.tracker(smoothing="none", detect_every=1)
        with tracker:
            faces = tracker.detect_image(img, max_faces=max_faces, search="single" if single_pass else "photo")
        _report_nonfinite(tracker, Path(input).name)
        if to_stdout:
            typer.echo(faces_document(faces, tracker.scheme, input))
        if landmarks_out is not None and landmarks_out.suffix.lower() == ".json":  # the same document as stdout
            write_exclusive(landmarks_out, (faces_document(faces, tracker.scheme, input) + "\n").encode(), overwrite)
        elif landmarks_out is not None:
            w = open_landmark_writer(landmarks_out, tracker.scheme.num_points, tracker.scheme.name, 0.0, overwrite)
            w.write(0, 0.0, faces)
            w.close()
        if out is not None:
            from .tracker import as_bgr

            canvas = draw_faces(as_bgr(img).copy(), faces, tracker.scheme, ellipses=ellipses)
            write_image(out, canvas, overwrite)  # same name rules as every other output
    summary = f"{len(faces)} face(s) in {input}" + "".join(f"; wrote {p}" for p in (out, landmarks_out) if p)
    typer.echo(summary, err=to_stdout)  # stdout holds only the JSON then


@app.command()
def info(model: Optional[str] = OPTIONS["model"][1], engine: str = OPTIONS["engine"][1]) -> None:
    """Engine, execution providers, model metadata and model card."""
    import onnxruntime as ort

    from .detection.blazeface import BUNDLED_DETECTORS
    from .model import BUNDLED_DIR as MODELS_DIR
    from .hashing import sha256_file
    from .engines import create_engine, engine_availability, has_nvidia_gpu

    typer.echo(f"onnxruntime {ort.__version__}; providers: {', '.join(ort.get_available_providers())}")
    engines = "; ".join(f"{name} {state}" for name, state in engine_availability().items())
    typer.echo(f"engines: {engines}; NVIDIA GPU: {'yes' if has_nvidia_gpu() else 'no'}")
    for name, (fname, digest) in BUNDLED_DETECTORS.items():
        p = MODELS_DIR / fname
        state = "missing" if not p.is_file() else ("ok" if sha256_file(p) == digest else "CORRUPT (sha256 mismatch)")
        typer.echo(f"detector {name}: {fname} [{state}]")
    from .model.registry import default_model_path, model_card, resolve_model

    if model is None and not default_model_path().is_file():
        typer.echo(f"model: none (the bundled model {default_model_path()} is not installed; "
                   "use --model PATH.onnx)")
        return
    with error_boundary(model or "default model"):
        path = resolve_model(model)
        eng = create_engine(path, engine)
        m = eng.meta
        typer.echo(f"model: {path}\nengine: {eng.name}\nscheme: {m.scheme}, input {m.input_size}px, "
                   f"crop scale {m.crop_scale}, box calibration {m.box_calibration}")
        card = model_card(path)
        typer.echo(f"\n{card}" if card else "(no model card)")


@models_app.command("list")
def models_list() -> None:
    """Bundled and cached models (the one ``default`` names is marked)."""
    from .model.registry import cache_dir, default_model_path, list_models

    entries = list_models()
    for e in entries:
        mark = " (default)" if e.path == default_model_path() else ""
        typer.echo(f"{e.name}{mark}\t{e.source}\t{e.path}")
    if not entries:
        typer.echo(f"no models installed (bundled dir empty; cache {cache_dir()})")


@models_app.command("import")
def models_import(
    checkpoint: Path = typer.Argument(..., help="official STAR .pkl or a star-track training checkpoint (.pt)"),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="model name (default: the file's stem)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a cached model of the same name"),
) -> None:
    """Convert a checkpoint to a verified ONNX model in the user cache (use it with --model NAME)."""
    from .nn.model_import import import_model

    with error_boundary(str(checkpoint)):
        path = import_model(checkpoint, name, overwrite)
    typer.echo(f"installed {path.stem}: {path}")


@bench_app.command("engines")
def bench_engines(
    model: Optional[str] = OPTIONS["model"][1],
    engines: str = typer.Option("onnxruntime,torch,tensorrt", "--engines", help="comma-separated engine names"),
    batches: str = typer.Option("1,4,8", "--batches", help="comma-separated batch sizes"),
    repeats: int = typer.Option(20, "--repeats", min=1, help="timed runs per batch size (median reported)"),
) -> None:
    """Time each available landmark engine at batch 1/4/8 (unavailable engines are listed, not fatal)."""
    from .engines.timing import print_table, run_engine_bench

    with error_boundary(model or "default model"):
        try:
            sizes = [int(b) for b in batches.split(",") if b.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise fail(f"--batches must be comma-separated integers >= 1, got {batches!r}", 2)
        rows = run_engine_bench(model, [e.strip() for e in engines.split(",") if e.strip()], sizes, repeats)
        print_table(rows)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Unlike typer's standalone mode, a usage error (bad option value, unknown option, missing argument) is one
    line on stderr with exit code 2, like every other error.
    """
    try:
        rv = app(args=argv, prog_name="star-track", standalone_mode=False)
    except typer.TyperException as e:  # click's ClickException family (vendored by typer)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `star-track` / `star-track models`: the help
            from typer import core as typer_core

            if not getattr(typer_core, "HAS_RICH", True):  # rich help is printed as it is built
                e.show()  # type: ignore[attr-defined]  # click's, not in typer's stubs
            return e.exit_code
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        fail(f"{e.format_message()}{hint}")
        return getattr(e, "exit_code", 2)
    except typer.Abort:
        fail("aborted")
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console-script entry point.

    SIGINT and SIGTERM are one line and exit 130 / 143 in every phase: start-up and model loading (the handler
    raises :class:`~star_track.run.signals.Interrupted`), processing (:class:`StopFlag`), and the interpreter's
    teardown, where the signals are ignored so a second Ctrl-C cannot turn the exit code into death-by-signal
    and native libraries' shutdown logs stay off the terminal.
    """
    install_handlers()  # already done by star_track._entry; here too when main() is called directly
    _silence_native_stderr()
    try:
        code = run_cli()
    except BaseException as e:  # noqa: BLE001 - interrupts outside a command's boundary (parsing, imports)
        hit = interrupted_by(e) or (Interrupted(signal.SIGINT) if isinstance(e, KeyboardInterrupt) else None)
        if hit is None:
            raise
        code = hit.exit_code
        with contextlib.suppress(Exception):
            typer.echo(f"star-track: {hit.word}", err=True)
    _quiet_exit(code)


def _silence_native_stderr() -> None:
    """Point descriptor 2, where FFmpeg, OpenCV and LiteRT write their log lines, at /dev/null, and give
    Python's ``sys.stderr`` (our one-line errors, warnings, the progress bar) its own copy of the real stderr.
    ``--verbose`` undoes it."""
    global _REAL_STDERR
    try:
        sys.stderr.flush()
        real = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    sys.stderr = open(real, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                      errors="backslashreplace", closefd=False)
    os.dup2(devnull, 2)
    os.close(devnull)
    _REAL_STDERR = real


def _quiet_exit(code: int) -> None:
    """Exit with ``code``: further SIGINT/SIGTERM ignored, native teardown logs silenced."""
    for s in SIGNAL_EXIT:
        signal.signal(s, signal.SIG_IGN)  # Python resets only its own handlers to SIG_DFL at exit, not SIG_IGN
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    sys.exit(code)


if __name__ == "__main__":
    main()
