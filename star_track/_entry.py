"""The ``star-track`` console script: signal handlers first, then the (heavier) command line.

Everything imported before the handlers are installed is a window in which Ctrl-C is Python's traceback and
SIGTERM a silent death, so this module imports nothing but :mod:`signal`, :mod:`sys` and the light
:mod:`star_track.run.signals` before installing them.
"""
from __future__ import annotations

import signal
import sys

from .run.signals import SIGNAL_EXIT, install_handlers, interrupted_by


def main() -> None:
    """Console-script entry point."""
    install_handlers()
    try:
        from .cli import main as cli_main
    except BaseException as e:  # noqa: BLE001 - only interrupts are handled here
        hit = interrupted_by(e)
        if hit is None:
            raise
        for s in SIGNAL_EXIT:
            signal.signal(s, signal.SIG_IGN)
        sys.stderr.write(f"star-track: {hit.word}\n")
        sys.exit(hit.exit_code)
    cli_main()


if __name__ == "__main__":
    main()
