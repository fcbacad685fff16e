"""Claiming output names: no silent replacement, one rule for symlinks, no stale hidden files.

Rules (the CLI and the SDK writers follow them):

* Without ``overwrite`` an output name that exists in any form (file, folder, symlink, even a dangling or
  looping one) is refused, and the name is claimed atomically (``O_EXCL``), so of several runs started on the
  same output exactly one writes it; the others fail with "already exists".
* With ``overwrite`` the *name* is replaced: a symlink there is removed and a new file is written, the link's
  target is never written through.
* Files written in one go at the end (video, ``.npz``, ``.parquet``, a batch's outputs) are written to hidden
  ``.NAME.partial-PID.EXT`` files (:func:`partial_path`, plus ``.star-track-PID-*`` spool folders) and hold a
  ``.NAME.claim-PID`` file meanwhile. A run killed with SIGKILL cannot remove them; the next run writing into
  that folder removes those of processes that no longer exist (:func:`clean_stale_partials`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..errors import OutputError

_STALE = re.compile(r"^\..+\.(?:partial|claim)-(\d+)(?:\.[^.]+)?$|^\.star-track-(\d+)-")
SPOOL_PREFIX = ".star-track-"
"""Name prefix of the spool folders writers keep beside their output (``.star-track-PID-*``)."""


def partial_path(final: str | os.PathLike) -> Path:
    """The hidden name ``final`` is written under until it is complete: ``.NAME.partial-PID.EXT`` beside it
    (the pid lets a later run recognise, and remove, the file of a killed one)."""
    final = Path(final)
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")


def is_partial(name: str) -> bool:
    """True when the file name ``name`` is a hidden partial file (:func:`partial_path`) of some run."""
    return name.startswith(".") and ".partial-" in name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's live process (or an absurd number): leave its files alone
    return True


def clean_stale_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove hidden partial files, claims and spool folders of star-track processes that no longer exist.

    Returns the paths removed (errors are ignored: cleaning is best effort)."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _STALE.match(entry.name)
            if not m:
                continue
            pid = int(m.group(1) or m.group(2))
            if pid == os.getpid() or _pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def input_paths(spec: str | os.PathLike) -> list[Path]:
    """The local files an input spec may name: the path itself, and for a ``file:`` URL both what FFmpeg opens
    (the text after ``file:``, as is) and the URL's decoded path. Other URLs (rtsp, http, ...) name none."""
    text = os.fspath(spec)
    if not text.lower().startswith("file:"):
        return [] if "://" in text else [Path(text)]
    rest = text[len("file:"):]
    paths = [Path(rest)] if rest else []
    parsed = urlparse(text)
    if parsed.path and parsed.netloc in ("", "localhost"):
        paths.append(Path(url2pathname(parsed.path)))
    return paths


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are the same existing file (same device and inode: a hard link, a symlink or
    another spelling of the path counts); False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def open_exclusive(path: Path, overwrite: bool, binary: bool = False):
    """Open ``path`` for writing under the rules above (unbuffered binary or UTF-8 text)."""
    path = Path(path)
    clean_stale_partials(path.parent if str(path.parent) else Path("."))
    if overwrite and path.is_symlink():
        path.unlink()  # replace the link, never write through it
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        raise OutputError(f"{path}: already exists (use --overwrite to replace it)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symlink appeared after the checks
            raise OutputError(f"{path}: already exists (use --overwrite to replace it)") from None
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    if binary:
        return open(fd, "wb", buffering=0)
    return open(fd, "w", newline="", encoding="utf-8")


def write_exclusive(path: str | os.PathLike, data: bytes, overwrite: bool) -> None:
    """Write a whole small file (e.g. an image) under the rules above."""
    path = Path(path)
    with open_exclusive(path, overwrite, binary=True) as f:
        view = memoryview(data)
        try:
            while view:
                view = view[f.write(view):]
        except OSError as e:
            raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None


class OutputClaim:
    """Reserve ``path`` while its content is produced elsewhere, then move that content into place.

    Without ``overwrite`` the claim is a ``.NAME.claim-PID`` file created next to ``path`` after checking that
    ``path`` does not exist (a second run finds the claim and fails), and :meth:`commit` links the finished
    file to ``path`` (``os.link`` never replaces an existing name). With ``overwrite`` :meth:`commit` is
    ``os.replace`` (a symlink at ``path`` is replaced, not followed).
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool):
        self.path = Path(path)
        self.overwrite = overwrite
        folder = self.path.parent if str(self.path.parent) else Path(".")
        clean_stale_partials(folder)
        self._claim: Path | None = None
        if overwrite:
            return
        prefix = f".{self.path.name}.claim-"
        others = [e for e in os.listdir(folder) if e.startswith(prefix)]
        if others or os.path.lexists(self.path):
            raise OutputError(f"{self.path}: already exists or is being written by another run "
                             "(use --overwrite to replace it)")
        self._claim = folder / f"{prefix}{os.getpid()}"
        try:
            os.close(os.open(self._claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as e:
            self._claim = None
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        # Two runs may have passed the listing together: the lower pid keeps the claim.
        rivals = [int(e[len(prefix):]) for e in os.listdir(folder) if e.startswith(prefix)
                  and e[len(prefix):].isdigit()]
        if min(rivals) != os.getpid():
            self.release()
            raise OutputError(f"{self.path}: is being written by another run")

    def commit(self, finished: Path) -> None:
        """Move the finished file to ``path`` and release the claim."""
        try:
            if self.overwrite:
                if self.path.is_symlink():
                    self.path.unlink()
                os.replace(finished, self.path)
            else:
                try:
                    os.link(finished, self.path)
                except FileExistsError:
                    raise OutputError(f"{self.path}: appeared while this run was writing it; the result was "
                                     "left out") from None
                except OSError:  # no hard links on this filesystem: the claim still keeps other runs out
                    if os.path.lexists(self.path):
                        raise OutputError(f"{self.path}: appeared while this run was writing it") from None
                    os.replace(finished, self.path)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(finished)
        finally:
            self.release()

    def release(self) -> None:
        """Give the name up without writing it (idempotent)."""
        if self._claim is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._claim)
            self._claim = None


class ClosedOnExit:
    """Mixin: ``with writer:`` calls ``writer.close()`` at the end of the block, also on an error, so the
    output is finished (or cleaned up) exactly as after an explicit :meth:`close`."""

    def close(self) -> None:  # overridden by every writer
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
