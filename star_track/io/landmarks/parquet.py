"""``.parquet`` landmark files (pyarrow): one row per face and frame, list columns, metadata in the schema.

See :mod:`star_track.io.landmarks` for the layout. Rows are buffered and written one row group per
:data:`ROW_GROUP_FRAMES` frames to a hidden partial file that :meth:`ParquetLandmarkWriter.close` moves into
place, so the file appears complete or not at all (like ``.npz``).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...run.signals import deferred_signals
from ...errors import OutputError
from ..claims import ClosedOnExit, OutputClaim, partial_path
from .base import ANALYSIS_COLUMNS, analysis_values, expected_error, flat_covariance, reason

ROW_GROUP_FRAMES = 256
"""Frames per row group (bounded memory on long videos)."""


def _schema(num_points: int, scheme: str, fps: float) -> pa.Schema:
    f32 = pa.float32()
    meta = {"star_track": json.dumps({"scheme": scheme, "num_points": num_points, "fps": fps,
                                      "landmarks_layout": "x0,y0,x1,y1,...",
                                      "covariance_layout": "xx0,xy0,yy0,xx1,..."})}
    return pa.schema([("frame", pa.int64()), ("time", pa.float64()), ("track_id", pa.int64()), ("score", f32),
                      ("box", pa.list_(f32, 4)), ("landmarks", pa.list_(f32, 2 * num_points)),
                      ("covariance", pa.list_(f32, 3 * num_points)), ("expected_error", f32),
                      *((c, f32) for c in ANALYSIS_COLUMNS)], metadata=meta)


class ParquetLandmarkWriter(ClosedOnExit):
    """Landmarks as Parquet (see module docs); same constructor and methods as the other writers."""

    def __init__(self, path: Path, num_points: int, scheme: str, fps: float, overwrite: bool = False):
        self.path = Path(path)
        self.frames_written = 0
        self.num_points = num_points
        self._claim = OutputClaim(self.path, overwrite)  # also removes stale partials of killed runs
        self._tmp = partial_path(self.path)
        self._schema = _schema(num_points, scheme, fps)
        try:
            self._writer = pq.ParquetWriter(str(self._tmp), self._schema)
        except OSError as e:
            self._claim.release()
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self._rows: dict[str, list] = {k: [] for k in self._schema.names}
        self._closed = False

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        for f in faces:
            r = self._rows
            r["frame"].append(int(frame_index))
            r["time"].append(float(time))
            r["track_id"].append(int(f.track_id))
            r["score"].append(float(f.score))
            r["box"].append(np.asarray(f.box, np.float32).ravel())
            r["landmarks"].append(np.asarray(f.landmarks, np.float32).ravel())
            r["covariance"].append(flat_covariance(f.covariance, np.float32).ravel())
            r["expected_error"].append(expected_error(f))
            for c, v in zip(ANALYSIS_COLUMNS, analysis_values(f)):
                r[c].append(v)
        self.frames_written += 1
        if self.frames_written % ROW_GROUP_FRAMES == 0:
            try:
                self._flush()
            except Exception as e:  # noqa: BLE001 - e.g. disk full: the writer is unusable from here on
                raise self._abandon(e) from None

    def _abandon(self, e: BaseException) -> OutputError:
        """Drop the partial file and the claim after a failure; the error to raise (names this file, the
        reason)."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)
        self._claim.release()
        return OutputError(f"{self.path}: {reason(e)} (the parquet file could not be written)")

    def _flush(self) -> None:
        if not self._rows["frame"]:
            return
        cols = []
        for name in self._schema.names:
            vals = self._rows[name]
            typ = self._schema.field(name).type
            if pa.types.is_fixed_size_list(typ):
                flat = pa.array(np.concatenate(vals).astype(np.float32), pa.float32())
                cols.append(pa.FixedSizeListArray.from_arrays(flat, typ.list_size))
            else:
                cols.append(pa.array(vals, typ))
        self._writer.write_table(pa.Table.from_arrays(cols, schema=self._schema))
        self._rows = {k: [] for k in self._schema.names}

    def close(self) -> None:
        """Write the last rows and the frame count, then move the file into place (idempotent)."""
        if self._closed:
            return
        with deferred_signals():  # SIGINT/SIGTERM now are delivered once the file is in place
            try:
                self._flush()
                self._writer.add_key_value_metadata({"frame_count": str(self.frames_written)})
                self._writer.close()
            except Exception as e:  # noqa: BLE001 - e.g. disk full: nothing hidden is left behind
                raise self._abandon(e) from None
            self._closed = True
            self._claim.commit(self._tmp)
