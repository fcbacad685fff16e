"""Errors to exit codes: every failure of ``star-track`` (and of ``python -m train`` / ``python -m export``) is one
line on stderr and an exit code: 1 = error, 2 = bad usage, 130 = interrupted by SIGINT, 143 = terminated by
SIGTERM; never a traceback."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import typer

from ..errors import OutputClosed, StarTrackError
from ..run.signals import Interrupted, interrupted_by

EXIT_ERROR = 1
"""The exit code of a failure (2 is bad usage, 130/143 a signal)."""


def fail(message: str, code: int = EXIT_ERROR, prog: str = "star-track") -> typer.Exit:
    """Print ``PROG: error: message`` (one line) to stderr and return the Exit to raise: the one error style
    of ``star-track``, ``python -m train`` and ``python -m export``."""
    text = " ".join(str(message).split())
    typer.echo(f"{prog}: error: {text}", err=True)
    return typer.Exit(code)



def run_app(app: typer.Typer, prog: str, argv: list[str] | None = None) -> int:
    """Run ``app`` (as ``prog``) on ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Unlike typer's standalone mode, a usage error (bad option value, unknown option, missing argument) is one
    line on stderr, ``PROG: error: ...``, with exit code 2, like every other error.
    """
    try:
        rv = app(args=argv, prog_name=prog, standalone_mode=False)
    except typer.TyperException as e:  # click's ClickException family (vendored by typer)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `star-track` / `star-track models`: the help
            from typer import core as typer_core

            if not getattr(typer_core, "HAS_RICH", True):  # rich help is printed as it is built
                e.show()  # type: ignore[attr-defined]  # click's, not in typer's stubs
            return e.exit_code
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        fail(f"{e.format_message()}{hint}", prog=prog)
        return getattr(e, "exit_code", 2)
    except typer.Abort:
        fail("aborted", prog=prog)
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0

@contextlib.contextmanager
def error_boundary(subject: str) -> Iterator[None]:
    """Turn any exception into one stderr line mentioning ``subject`` (a :class:`StarTrackError` already names
    it)."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except OutputClosed as e:  # `... -l - | head`: the reader has what it wanted; not an error
        detach_stdout()
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


def detach_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so nothing (not even the flush at exit) writes to the
    closed pipe again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
