"""``.npz`` landmark files: records spooled to disk while running (bounded memory), the archive assembled
and moved into place by :meth:`NpzLandmarkWriter.close`."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...run.signals import deferred_signals
from ...errors import OutputError
from ..claims import SPOOL_PREFIX, ClosedOnExit, OutputClaim, partial_path
from .base import ANALYSIS_COLUMNS, analysis_values, expected_error, reason, write_all, write_failed


class NpzLandmarkWriter(ClosedOnExit):
    """See module docs. Each frame's records go to the spool in one piece; a write that fails (disk full) is
    rolled back to the last whole frame, and :meth:`close` frees the spool before writing the archive, so a
    disk that filled up still gets the archive of the frames before (when it fits in the space the spool
    held). A failure names this file and the reason and leaves no hidden partial, spool or claim behind."""

    _FIELDS = {"frame": np.int64, "time": np.float64, "track_id": np.int64, "score": np.float32,
               "box": np.float32, "landmarks": np.float32, "raw_landmarks": np.float32, "covariance": np.float32,
               "expected_error": np.float32, **dict.fromkeys(ANALYSIS_COLUMNS, np.float32)}

    def __init__(self, path: Path, num_points: int, scheme: str, fps: float, overwrite: bool = False):
        self.path = Path(path)
        self.frames_written = 0
        self.num_points, self.scheme, self.fps = num_points, scheme, fps
        self._claim = OutputClaim(self.path, overwrite)  # also removes stale spools of killed runs
        self._closed = False
        try:
            # The pid in the name lets a later run recognise the spool of a killed one (claims).
            self._dir = tempfile.TemporaryDirectory(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=self.path.parent)
            self._spool = {k: open(Path(self._dir.name) / k, "wb", buffering=0) for k in self._FIELDS}
        except OSError as e:
            self._closed = True
            with contextlib.suppress(Exception):
                self._dir.cleanup()
            self._claim.release()
            raise write_failed(self.path, e, 0) from None
        self._good = dict.fromkeys(self._FIELDS, 0)  # spool sizes after the last whole frame
        self._rows = 0

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        if self._closed:
            raise OutputError(f"{self.path}: writer is closed")
        parts: dict[str, list[bytes]] = {k: [] for k in self._FIELDS}
        for f in faces:
            vals = {"frame": frame_index, "time": time, "track_id": f.track_id, "score": f.score, "box": f.box,
                    "landmarks": f.landmarks, "raw_landmarks": f.raw_landmarks, "covariance": f.covariance,
                    "expected_error": expected_error(f), **dict(zip(ANALYSIS_COLUMNS, analysis_values(f)))}
            for k, dtype in self._FIELDS.items():
                parts[k].append(np.asarray(vals[k], dtype).tobytes())
        if faces:
            try:
                for k, chunks in parts.items():
                    write_all(self._spool[k], b"".join(chunks))
            except OSError as e:
                with contextlib.suppress(OSError):
                    for k, spool in self._spool.items():  # shrinking needs no space
                        os.ftruncate(spool.fileno(), self._good[k])
                        spool.seek(self._good[k])
                raise write_failed(self.path, e, self.frames_written) from None
            self._good = {k: spool.tell() for k, spool in self._spool.items()}
            self._rows += len(faces)
        self.frames_written += 1

    def close(self) -> None:
        """Assemble the archive from the spool and move it into place (idempotent); SIGINT/SIGTERM arriving
        meanwhile are delivered when it is done."""
        if self._closed:
            return
        with deferred_signals():
            self._closed = True
            tmp = partial_path(self.path)
            try:
                n = self.num_points
                shapes = {"box": (4,), "landmarks": (n, 2), "raw_landmarks": (n, 2), "covariance": (n, 2, 2)}
                arrays: dict[str, Any] = {}
                for k, dtype in self._FIELDS.items():
                    self._spool[k].close()
                    data = np.fromfile(Path(self._dir.name) / k, dtype=dtype)
                    arrays[k] = data[:self._rows * int(np.prod(shapes.get(k, ())))].reshape(
                        (self._rows, *shapes.get(k, ())))
                self._dir.cleanup()  # the records are in memory now: their disk space is the archive's
                np.savez(tmp, frame_count=np.int64(self.frames_written), fps=np.float64(self.fps),
                         scheme=np.array(self.scheme), **arrays)
            except Exception as e:  # noqa: BLE001 - any failure: nothing hidden is left, the name is released
                with contextlib.suppress(Exception):
                    self._dir.cleanup()
                tmp.unlink(missing_ok=True)
                self._claim.release()
                raise OutputError(f"{self.path}: {reason(e)} (the archive of {self.frames_written} frames could "
                                  "not be written)") from None
            self._claim.commit(tmp)


