"""``star-track batch``: many videos into an output folder, on local worker processes or Ray (see
:mod:`star_track.run.batch`, imported when the command runs)."""
from __future__ import annotations

import signal
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ...run.signals import SIGNAL_EXIT
from ..exits import EXIT_ERROR, error_boundary
from ..options import Codec, TrackerOptions, tracker_options
from ..outputs import check_encoding


class LandmarksFormat(str, Enum):
    """Landmark file formats ``batch --landmarks-format`` accepts."""

    csv = "csv"
    json = "json"
    npz = "npz"
    parquet = "parquet"


@tracker_options("smoothing", "model", "engine", "max_faces", "detector", "detect_every", "output_68", "flip_test",
                 "threads", "no_analysis", "focal", "camera", "lookahead")
def batch(
    inputs: list[str] = typer.Argument(..., help="Videos, folders (searched for videos), glob patterns, or "
                                       ".txt/.csv lists of paths."),
    out_dir: Path = typer.Option(..., "--out-dir", "-d", help="Output folder: mirrors the input tree, plus "
                                 "manifest.jsonl."),
    landmarks_format: LandmarksFormat = typer.Option(LandmarksFormat.csv, "--landmarks-format", "-f",
                                                     help="Landmarks file format."),
    annotated: bool = typer.Option(False, "--video/--no-video", help="Also write NAME.annotated.mp4."),
    codec: Optional[Codec] = typer.Option(None, "--codec", help="Annotated video codec (default h264)."),
    crf: Optional[int] = typer.Option(None, "--crf", help="Annotated video constant quality (as on `video`)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Annotated video encoder speed (as on `video`)."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Leave the input's audio out of annotated videos."),
    no_draw: bool = typer.Option(False, "--no-draw", help="Annotated videos without annotations."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw 2-sigma uncertainty ellipses."),
    pose: bool = typer.Option(False, "--pose", help="Draw each face's head axes in the annotated videos."),
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

    from ...run.batch import run_batch, summary_table

    annotated_as = Path("NAME.annotated.mp4") if annotated else None  # the codec's default comes from .mp4
    check_encoding(annotated_as, "--video", codec.value if codec else None, crf, preset)
    o = tracker_options.capped()  # per worker: capped at the cores, said once here
    tracker_kwargs = {**o.tracker_kwargs(), "threads": o.threads or 1}
    video_options = {"codec": codec.value if codec else None, "crf": crf, "preset": preset, "audio": not no_audio,
                     "draw": not no_draw, "ellipses": ellipses, "pose": pose}
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
