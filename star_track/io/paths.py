"""Output and input paths checked before any work: a bad path never costs a whole run.

:func:`check_input_path` names a missing file or a folder as given; :func:`check_output_path` refuses an output
that exists (without overwrite), a folder, a missing or unwritable folder, or a nearly full disk.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError, VideoError


def check_input_path(source: str | os.PathLike, what: str, allow_devices: bool = False) -> Path:
    """``source`` as a Path if it is an existing file, else a VideoError naming it as given (``what``: "a video
    file", "an image"). URLs are refused by name (pathlib would turn ``http://x`` into ``http:/x``)."""
    text = os.fspath(source)
    if "://" in str(text) and not allow_devices:
        raise VideoError(f"{text}: URLs and streams are not supported (give a local file)")
    path = Path(text)
    if not path.exists():
        raise VideoError(f"{text}: no such file")
    if path.is_dir():
        raise VideoError(f"{text}: is a directory, not {what}")
    return path



MIN_FREE_BYTES = 32 * 2**20
"""Free space an output folder must have before processing starts (a full disk is refused up front)."""


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any processing) if ``path`` cannot be written.

    Raises:
        OutputError: the path is a directory, exists and ``overwrite`` is False, or its folder is missing, not
            writable, on no disk (``/proc``), or has less than :data:`MIN_FREE_BYTES` free.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a directory")
    if os.path.lexists(p) and not overwrite:  # lexists: a symlink, even dangling or looping, is taken
        raise OutputError(f"{p}: already exists (use --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        if parent.exists():
            raise OutputError(f"{p}: {parent} is not a folder")
        raise OutputError(f"{p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: folder {parent} is not writable")
    if p.exists() and not p.is_symlink() and not os.access(p, os.W_OK):
        raise OutputError(f"{p}: file is not writable")
    usage = shutil.disk_usage(parent)
    if usage.total == 0:  # /proc, /sys: writable for root, but no disk behind them
        raise OutputError(f"{p}: folder {parent} is not on a disk (a virtual file system such as /proc or /sys)")
    free = usage.free
    if free < MIN_FREE_BYTES:
        raise OutputError(f"{p}: disk almost full ({free / 2**20:.1f} MiB free in {parent})")
    return p

