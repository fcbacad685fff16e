"""The ``star-track`` console script: signal handlers first, then the (heavier) command line.

Everything imported before the handlers are installed is a window in which Ctrl-C is Python's traceback and
SIGTERM a silent death, so this module imports nothing but the standard library's :mod:`signal`, :mod:`sys`,
:mod:`os` and the light :mod:`star_track.run.signals` and :mod:`star_track.cli.stderr` before installing them.
"""
from __future__ import annotations

import contextlib
import signal
import sys

from ..run.signals import SIGNAL_EXIT, Interrupted, install_handlers, interrupted_by
from .stderr import silence_all_stderr, silence_native_stderr


def main() -> None:
    """Console-script entry point.

    SIGINT and SIGTERM are one line and exit 130 / 143 in every phase: start-up, imports and model loading (the
    handler raises :class:`~star_track.run.signals.Interrupted`), processing
    (:class:`~star_track.run.signals.StopFlag`), and the interpreter's teardown, where the signals are ignored so
    a second Ctrl-C cannot turn the exit code into death-by-signal and native libraries' shutdown logs stay off
    the terminal.
    """
    install_handlers()
    silence_native_stderr()
    try:
        from .app import run_cli

        code = run_cli()
    except BaseException as e:  # noqa: BLE001 - interrupts outside a command's boundary (imports, parsing)
        hit = interrupted_by(e) or (Interrupted(signal.SIGINT) if isinstance(e, KeyboardInterrupt) else None)
        if hit is None:
            raise
        code = hit.exit_code
        with contextlib.suppress(Exception):
            sys.stderr.write(f"star-track: {hit.word}\n")
    _quiet_exit(code)


def _quiet_exit(code: int) -> None:
    """Exit with ``code``: further SIGINT/SIGTERM ignored, native teardown logs silenced."""
    for s in SIGNAL_EXIT:
        signal.signal(s, signal.SIG_IGN)  # Python resets only its own handlers to SIG_DFL at exit, not SIG_IGN
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    silence_all_stderr()
    sys.exit(code)


if __name__ == "__main__":
    main()
