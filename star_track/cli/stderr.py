"""Native libraries' log lines off the terminal: FFmpeg, OpenCV and LiteRT write to descriptor 2 directly, so the
console script points it at /dev/null and gives Python's ``sys.stderr`` (our one-line errors, warnings, the
progress bar) its own copy of the real stderr; ``--verbose`` puts it back."""
from __future__ import annotations

import contextlib
import os
import sys

_real_stderr: int | None = None
"""While native logs are kept off the terminal: the descriptor of the real stderr (else None)."""


def silence_native_stderr() -> None:
    """Point descriptor 2 at /dev/null; ``sys.stderr`` writes to a copy of the real stderr."""
    global _real_stderr
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
    _real_stderr = real


def restore_native_stderr() -> None:
    """Let the native libraries' log lines through again (``--verbose``)."""
    if _real_stderr is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
        os.dup2(_real_stderr, 2)


def silence_all_stderr() -> None:
    """Point descriptor 2 at /dev/null for good (the interpreter's teardown: native shutdown logs)."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
