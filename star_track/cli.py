"""``star-track`` command line: a thin layer over the SDK (video, webcam, image, info, models).

Every failure is reported as one line on stderr naming the input and the reason, with a non-zero exit code
(1 = error, 2 = bad usage, 130 = interrupted by SIGINT, 143 = terminated by SIGTERM); no tracebacks.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

import typer

app = typer.Typer(name="star-track", help="Real-time facial landmark tracking with STAR uncertainty.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="List and manage landmark models.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks (the full suite: python -m benchmarks).", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(bench_app, name="bench")

EXIT_ERROR = 1
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Smoothing(str, Enum):
    kalman = "kalman"
    one_euro = "one-euro"
    none = "none"


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``star-track: error: message`` (one line) to stderr and return the Exit to raise."""
    text = " ".join(str(message).split())
    typer.echo(f"star-track: error: {text}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def error_boundary(subject: str) -> Iterator[None]:
    """Turn any exception into one stderr line mentioning ``subject`` (known errors already name it)."""
    from .detect import DetectorError
    from .engines import EngineUnavailable
    from .engines.base import ModelError
    from .video import VideoError

    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except (VideoError, ModelError, DetectorError, EngineUnavailable) as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt:
        raise fail(f"{subject}: interrupted", 130) from None
    except ValueError as e:
        raise fail(f"{subject}: {e}") from None
    except MemoryError:
        raise fail(f"{subject}: out of memory") from None
    except Exception as e:  # the boundary: never a traceback
        raise fail(f"{subject}: {type(e).__name__}: {e}") from None


class StopFlag:
    """Records SIGINT/SIGTERM instead of raising, so the current frame finishes and files get closed."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        for s in SIGNAL_EXIT:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: keep default behaviour
                pass
        return self

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:  # second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT.get(self.signum, 0) if self.signum is not None else 0


def _make_tracker(model, engine, smoothing, max_faces, detector, detect_every, output_68, fps=30.0,
                  flip_test=False):
    from .tracker import Tracker

    return Tracker(model=model, engine=engine, smoothing=smoothing, max_faces=max_faces,
                   detect_every=detect_every, detector=detector, output_scheme="68" if output_68 else None,
                   fps=fps, flip_test=flip_test)


ModelOpt = typer.Option(None, "--model", "-m", help="Model: 'default', a name in the model cache, or a .onnx path.")
EngineOpt = typer.Option("auto", "--engine", "-e", help="auto, onnxruntime, tensorrt or torch.")
SmoothOpt = typer.Option(Smoothing.kalman, "--smoothing", "-s", help="Temporal smoothing.")
FacesOpt = typer.Option(4, "--max-faces", min=1, help="Most faces tracked at once.")
DetectorOpt = typer.Option("full", "--detector", help="Face detector: full (default; faces up to ~5 m), short (selfie distance, faster) or a .tflite path.")
EveryOpt = typer.Option(10, "--detect-every", min=1, help="Run the face detector at least every K frames.")
Out68Opt = typer.Option(False, "--68", help="Output 300W 68-point landmarks (reduces 98-point models).")
FlipOpt = typer.Option(False, "--flip-test", help="Also run each face mirrored and average: more accurate, 2x engine time.")


@app.command()
def video(
    input: Path = typer.Argument(..., help="Input video file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output video (.mp4, .avi, .mov, .mkv)."),
    landmarks_out: Optional[Path] = typer.Option(None, "--landmarks-out", "-l",
                                                 help="Landmarks file: .csv, .json or .npz."),
    smoothing: Smoothing = SmoothOpt,
    model: Optional[str] = ModelOpt,
    engine: str = EngineOpt,
    max_faces: int = FacesOpt,
    detector: str = DetectorOpt,
    detect_every: int = EveryOpt,
    output_68: bool = Out68Opt,
    flip_test: bool = FlipOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    no_draw: bool = typer.Option(False, "--no-draw", help="Write the frames without annotations."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw each landmark's 2-sigma uncertainty ellipse."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Track faces in a video file; write an annotated video and/or a landmarks file."""
    if out is None and landmarks_out is None:
        raise fail(f"{input}: nothing to write: give --out and/or --landmarks-out", 2)
    from .draw import draw_faces
    from .landmark_io import open_landmark_writer
    from .video import VideoError, VideoSink, VideoSource, check_output_path

    sink = writer = None
    frames = 0
    stop = StopFlag()
    with error_boundary(str(input)):
        # Outputs are checked before any work so a bad path never costs a full run.
        for p in (out, landmarks_out):
            if p is not None:
                check_output_path(p, overwrite)
                if input.exists() and p.exists() and p.resolve() == input.resolve():
                    raise VideoError(f"{p}: output would overwrite the input")
        if out is not None and landmarks_out is not None and out.resolve() == landmarks_out.resolve():
            raise VideoError(f"{out}: --out and --landmarks-out are the same file")
        source = VideoSource(input)
        frames_with_faces = 0
        t_start = time.perf_counter()
        try:
            tracker = _make_tracker(model, engine, smoothing.value, max_faces, detector, detect_every, output_68,
                                    fps=source.fps, flip_test=flip_test)
            with tracker, stop:
                if out is not None:
                    sink = VideoSink(out, source.fps, source.size, overwrite=overwrite)
                if landmarks_out is not None:
                    writer = open_landmark_writer(landmarks_out, tracker.scheme.num_points, tracker.scheme.name,
                                                  source.fps, overwrite=overwrite)
                with _progress(progress, source.frame_count, input.name) as advance:
                    fps_ema = None
                    for vf in source:
                        t0 = time.perf_counter()
                        faces = tracker.track(vf.image, vf.time)
                        if writer is not None:
                            writer.write(vf.index, vf.time, faces)
                        if sink is not None:
                            img = vf.image if no_draw else draw_faces(vf.image, faces, tracker.scheme,
                                                                      ellipses=ellipses)
                            sink.write(img)
                        frames += 1
                        frames_with_faces += bool(faces)
                        dt = time.perf_counter() - t0
                        fps_ema = 1 / max(dt, 1e-6) if fps_ema is None else 0.9 * fps_ema + 0.1 / max(dt, 1e-6)
                        advance(fps_ema)
                        if stop.signum is not None:
                            break
        finally:
            source.close()
            for w in (sink, writer):
                if w is not None:
                    w.close()
    elapsed = time.perf_counter() - t_start
    targets = ", ".join(str(p) for p in (out, landmarks_out) if p is not None)
    if stop.signum is not None:
        name = signal.Signals(stop.signum).name
        typer.echo(f"star-track: {name}: stopped after {frames} frames; wrote {frames} frames to {targets}",
                   err=True)
        raise typer.Exit(stop.exit_code)
    typer.echo(f"wrote {frames} frames to {targets} ({frames / max(elapsed, 1e-9):.1f} fps overall); "
               f"faces in {frames_with_faces} of them")
    if frames and not frames_with_faces:
        typer.echo(f"star-track: warning: {input.name}: no face found in any frame", err=True)


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None, label: str):
    """Rich progress bar on stderr with fps and ETA; yields ``advance(fps)``."""
    if not enabled:
        yield lambda fps: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[fps]:>6.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as prog:
        task = prog.add_task(label, total=total, fps=0.0)
        yield lambda fps: prog.update(task, advance=1, fps=fps or 0.0)


@app.command()
def webcam(
    camera: int = typer.Option(0, "--camera", "-c", help="Camera index."),
    smoothing: Smoothing = SmoothOpt,
    model: Optional[str] = ModelOpt,
    engine: str = EngineOpt,
    max_faces: int = FacesOpt,
    detector: str = DetectorOpt,
    detect_every: int = EveryOpt,
    flip_test: bool = FlipOpt,
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw uncertainty ellipses."),
) -> None:
    """Live tracking from a camera in a window (q or Esc quits)."""
    import cv2

    from .draw import draw_faces
    from .video import VideoSource

    frames = 0
    stop = StopFlag()
    with error_boundary(f"camera {camera}"):
        source = VideoSource(camera)
        try:
            tracker = _make_tracker(model, engine, smoothing.value, max_faces, detector, detect_every, False,
                                    fps=source.fps, flip_test=flip_test)
            window = "star-track (q to quit)"
            fps, t_last = 0.0, time.perf_counter()
            with tracker, stop:
                for vf in source:  # ends cleanly when the camera disconnects
                    now = time.perf_counter()
                    faces = tracker.track(vf.image, vf.time)  # capture times: real gaps when frames are slow
                    inst = 1.0 / max(now - t_last, 1e-6)
                    fps = inst if frames == 0 else 0.9 * fps + 0.1 * inst
                    t_last = now
                    cv2.imshow(window, draw_faces(vf.image, faces, tracker.scheme, ellipses=ellipses, fps=fps))
                    frames += 1
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27) or stop.signum is not None:
                        break
        finally:
            source.close()
            with contextlib.suppress(Exception):
                cv2.destroyAllWindows()
    typer.echo(f"processed {frames} frames from camera {camera}")
    if stop.signum is not None:
        raise typer.Exit(stop.exit_code)


@app.command()
def image(
    input: Path = typer.Argument(..., help="Input image."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Annotated output image."),
    landmarks_out: Optional[Path] = typer.Option(None, "--landmarks-out", "-l", help="Landmarks .csv/.json/.npz."),
    model: Optional[str] = ModelOpt,
    engine: str = EngineOpt,
    max_faces: Optional[int] = typer.Option(None, "--max-faces", min=1, help="Most faces returned (default: all)."),
    detector: str = DetectorOpt,
    output_68: bool = Out68Opt,
    flip_test: bool = FlipOpt,
    single_pass: bool = typer.Option(False, "--single-pass", help="One whole-image detector pass (fast, as in video) "
                                     "instead of photo mode's tiles and rolled passes: misses small and rolled faces."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw uncertainty ellipses."),
) -> None:
    """Landmarks of every face in a single image (photo mode: small and rolled faces too)."""
    if out is None and landmarks_out is None:
        raise fail(f"{input}: nothing to write: give --out and/or --landmarks-out", 2)
    import cv2

    from .draw import draw_faces
    from .landmark_io import open_landmark_writer
    from .video import VideoError, check_output_path

    with error_boundary(str(input)):
        for p in (out, landmarks_out):
            if p is not None:
                check_output_path(p, overwrite)
        if not input.exists():
            raise VideoError(f"{input}: no such file")
        if input.is_dir():
            raise VideoError(f"{input}: is a directory, not an image")
        img = cv2.imread(str(input), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise VideoError(f"{input}: not an image OpenCV can read")
        if img.dtype != "uint8":
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
        tracker = _make_tracker(model, engine, "none", max_faces or 1, detector, 1, output_68, flip_test=flip_test)
        with tracker:
            faces = tracker.detect_image(img, max_faces=max_faces, search="single" if single_pass else "photo")
        if landmarks_out is not None:
            w = open_landmark_writer(landmarks_out, tracker.scheme.num_points, tracker.scheme.name, 0.0, overwrite)
            w.write(0, 0.0, faces)
            w.close()
        if out is not None:
            from .tracker import as_bgr

            canvas = draw_faces(as_bgr(img).copy(), faces, tracker.scheme, ellipses=ellipses)
            if not cv2.imwrite(str(out), canvas):
                raise VideoError(f"{out}: could not write the image (unsupported extension?)")
    typer.echo(f"{len(faces)} face(s) in {input}" + "".join(f"; wrote {p}" for p in (out, landmarks_out) if p))


@app.command()
def info(model: Optional[str] = ModelOpt, engine: str = EngineOpt) -> None:
    """Engine, execution providers, model metadata and model card."""
    import onnxruntime as ort

    from .detect import BUNDLED_DETECTORS, MODELS_DIR, sha256_file
    from .engines import create_engine, engine_names, has_nvidia_gpu

    typer.echo(f"onnxruntime {ort.__version__}; providers: {', '.join(ort.get_available_providers())}")
    typer.echo(f"engines: {', '.join(engine_names())}; NVIDIA GPU: {'yes' if has_nvidia_gpu() else 'no'}")
    for name, (fname, digest) in BUNDLED_DETECTORS.items():
        p = MODELS_DIR / fname
        state = "missing" if not p.is_file() else ("ok" if sha256_file(p) == digest else "CORRUPT (sha256 mismatch)")
        typer.echo(f"detector {name}: {fname} [{state}]")
    from .model_registry import BUNDLED_DIR, model_card, resolve_model

    if model is None and not (BUNDLED_DIR / "default.onnx").is_file():
        typer.echo(f"model: none (the bundled model {BUNDLED_DIR / 'default.onnx'} is not installed; "
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
    """Bundled and cached models."""
    from .model_registry import cache_dir, list_models

    entries = list_models()
    for e in entries:
        typer.echo(f"{e.name}\t{e.source}\t{e.path}")
    if not entries:
        typer.echo(f"no models installed (bundled dir empty; cache {cache_dir()})")


@models_app.command("import")
def models_import(
    checkpoint: Path = typer.Argument(..., help="official STAR .pkl or a star-track training checkpoint (.pt)"),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="model name (default: the file's stem)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a cached model of the same name"),
) -> None:
    """Convert a checkpoint to a verified ONNX model in the user cache (use it with --model NAME)."""
    from .model_import import import_model

    with error_boundary(str(checkpoint)):
        path = import_model(checkpoint, name, overwrite)
    typer.echo(f"installed {path.stem}: {path}")


@bench_app.command("engines")
def bench_engines(
    model: Optional[str] = ModelOpt,
    engines: str = typer.Option("onnxruntime,torch,tensorrt", "--engines", help="comma-separated engine names"),
    batches: str = typer.Option("1,4,8", "--batches", help="comma-separated batch sizes"),
    repeats: int = typer.Option(20, "--repeats", min=1, help="timed runs per batch size (median reported)"),
) -> None:
    """Time each available landmark engine at batch 1/4/8 (unavailable engines are listed, not fatal)."""
    from .bench_engines import print_table, run_engine_bench

    with error_boundary(model or "default model"):
        try:
            sizes = [int(b) for b in batches.split(",") if b.strip()]
        except ValueError:
            raise fail(f"--batches must be comma-separated integers, got {batches!r}", 2) from None
        rows = run_engine_bench(model, [e.strip() for e in engines.split(",") if e.strip()], sizes, repeats)
        print_table(rows)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (e.g. during imports)
        typer.echo("star-track: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
