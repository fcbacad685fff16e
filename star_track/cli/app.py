"""The ``star-track`` application: the global options, the commands (:mod:`star_track.cli.commands`) and
:func:`run_cli`, which turns a usage error into one line and exit code 2 like every other error
(:mod:`star_track.cli.exits`)."""
from __future__ import annotations

import typer

from .commands import batch, bench, image, models, plot, video
from .exits import EXIT_ERROR, fail
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
