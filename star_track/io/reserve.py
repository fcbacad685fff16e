"""Disk space held for a file that another writer (FFmpeg) is appending to, so that it can always be
finished (Linux ``fallocate``)."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import sys
from pathlib import Path


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2


def _libc_fallocate():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_fallocate = _libc_fallocate()


class SpaceReserve:
    """Keep disk space allocated just past the end of a file that another writer (FFmpeg) is appending to.

    :meth:`ensure` allocates ``nbytes`` beyond the file's current end without changing its size (Linux
    ``fallocate(FALLOC_FL_KEEP_SIZE)``). Those blocks belong to the file, so no other writer, not even another
    process filling the disk, can take them, and the writer's later appends (the encoder's flush, an MP4's
    index) land in them without ENOSPC. :meth:`release` gives back what is left unused. Where the filesystem
    or OS cannot do this (:attr:`supported` False) the caller falls back to checking the free space.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.supported = _fallocate is not None
        self._fd: int | None = None
        if self.supported:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                self.supported = False

    def _call(self, mode: int, offset: int, nbytes: int) -> int:
        """0, or the errno of a failed ``fallocate``."""
        assert _fallocate is not None and self._fd is not None
        if _fallocate(self._fd, mode, offset, nbytes) == 0:
            return 0
        return ctypes.get_errno()

    def ensure(self, nbytes: int) -> bool:
        """Hold ``nbytes`` allocated past the current end of the file; False when the disk has no room for
        that (ENOSPC). Unsupported here: True, with :attr:`supported` set to False."""
        if not self.supported or self._fd is None:
            return True
        err = self._call(_FALLOC_FL_KEEP_SIZE, os.fstat(self._fd).st_size, max(int(nbytes), 1))
        if err in (errno.ENOSPC, errno.EDQUOT):
            return False
        if err:  # EOPNOTSUPP (e.g. NFS, FAT), EINVAL, ...: no reservation on this filesystem
            self.supported = False
        return True

    def release(self) -> None:
        """Free the allocated blocks past the end of the file and stop reserving (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if self.supported:  # ext4 frees blocks past the end on a same-size truncate, tmpfs/XFS on a punch
                end = os.fstat(fd).st_size
                os.ftruncate(fd, end)
                self._fd = fd
                self._call(_FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, end, 2**40)
                self._fd = None
        with contextlib.suppress(OSError):
            os.close(fd)
