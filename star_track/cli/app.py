"""The ``star-track`` application: the global options, the commands (:mod:`star_track.cli.commands`) and
:func:`run_cli`, which turns a usage error into one line and exit code 2 like every other error
(:mod:`star_track.cli.exits`)."""
from __future__ import annotations

import typer

from .commands import batch, bench, image, models, plot, video
from .exits import run_app
from .stderr import restore_native_stderr

app = typer.Typer(name="star-track", help="Real-time facial landmark tracking with STAR uncertainty.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="List and manage landmark models.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks (the full suite: python -m benchmarks).", no_args_is_help=True)
app.command()(video.video)
app.command()(batch.batch)
app.command()(video.webcam)
app.command()(image.image)
app.command()(plot.plot)
app.command()(models.info)
app.add_typer(models_app, name="models")
models_app.command("list")(models.models_list)
models_app.command("import")(models.models_import)
app.add_typer(bench_app, name="bench")
bench_app.command("engines")(bench.bench_engines)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"star-track {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(verbose: bool = typer.Option(False, "--verbose", help="Also show the native libraries' "
                                                 "own log lines (FFmpeg, OpenCV, LiteRT)."),
                    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                                 help="Print the version and exit.")) -> None:
    """Real-time facial landmark tracking with STAR uncertainty."""
    if verbose:
        from ..io.av_video import set_verbose

        set_verbose(True)  # FFmpeg's log lines through PyAV (they are off by default)
        restore_native_stderr()


def run_cli(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit code (a usage error is
    one line and exit code 2: :func:`~star_track.cli.exits.run_app`)."""
    return run_app(app, "star-track", argv)
