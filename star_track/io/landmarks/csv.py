"""``.csv`` landmark files: one row per face and frame, flushed after every frame (or a stream such as
stdout), and :func:`read_landmarks_csv` to load one back."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import OutputClosed
from ..claims import ClosedOnExit, open_exclusive
from ...errors import StarTrackError
from .base import ANALYSIS_COLUMNS, analysis_values, expected_error, flat_covariance, write_all, write_failed


def csv_header(num_points: int) -> list[str]:
    """The CSV columns: ``frame, time, track_id, score, box_x1..box_y2, x0, y0, ..., cxx0, cxy0, cyy0, ...,
    expected_error``, then the face state's :data:`~.base.ANALYSIS_COLUMNS` (``yaw, pitch, roll, yaw_sd,
    pitch_sd, roll_sd, eye_open_left, eye_open_right, mouth_open, blink``)."""
    header = ["frame", "time", "track_id", "score", "box_x1", "box_y1", "box_x2", "box_y2"]
    header += [f"{a}{i}" for i in range(num_points) for a in ("x", "y")]
    header += [f"{c}{i}" for i in range(num_points) for c in ("cxx", "cxy", "cyy")]
    return header + ["expected_error", *ANALYSIS_COLUMNS]


def _fmt(values, spec: str) -> list[str]:
    """Numbers as CSV fields; non-finite ones as empty fields (never ``nan``/``inf``)."""
    return [format(v, spec) if np.isfinite(v) else "" for v in np.asarray(values, np.float64).ravel()]


class CsvLandmarkWriter(ClosedOnExit):
    """See module docs. Each frame's rows go to disk in one piece; if a write fails (disk full) the file is
    cut back to the last whole frame, so it stays readable by :func:`read_landmarks_csv`. ``stream`` (an open
    binary file such as stdout) is written instead of ``path`` when given."""

    def __init__(self, path: Path, num_points: int, scheme: str, fps: float, overwrite: bool = False,
                 stream=None):
        self.path = Path(path)
        self.frames_written = 0
        header = csv_header(num_points)
        self._f = stream if stream is not None else open_exclusive(self.path, overwrite, binary=True)
        self._stream = stream is not None
        self._good = 0  # file size after the last complete frame
        self._append([header])

    def _append(self, rows: list) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        try:
            if self._stream:
                self._f.write(buf.getvalue().encode("utf-8"))
                self._f.flush()
                return
            write_all(self._f, buf.getvalue().encode("utf-8"))
        except OSError as e:
            if self._stream:
                if isinstance(e, BrokenPipeError):  # e.g. `| head`: the reader has all it wanted
                    raise OutputClosed(f"{self.path}: closed by its reader after {self.frames_written} frames") \
                        from None
                raise write_failed(self.path, e, self.frames_written) from None
            os.ftruncate(self._f.fileno(), self._good)  # shrinking needs no space
            raise write_failed(self.path, e, self.frames_written) from None
        self._good = self._f.tell()

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        rows = []
        for f in faces:
            row = [frame_index, *_fmt([time], ".6f"), f.track_id, *_fmt([f.score], ".5f")]
            row += _fmt(f.box, ".3f") + _fmt(f.landmarks, ".3f")
            row += _fmt(flat_covariance(f.covariance), ".5g")
            row += _fmt([expected_error(f)], ".5g") + _fmt(analysis_values(f), ".5g")
            rows.append(row)
        if rows:
            self._append(rows)
        self.frames_written += 1

    def close(self) -> None:
        if self._stream:
            return
        if not self._f.closed:
            self._f.close()


class LandmarkFileError(StarTrackError, ValueError):
    """A file that is not a star-track landmark file (another tool's, damaged, or of an unknown layout)."""


def read_landmarks_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a landmarks CSV back (empty fields as NaN): ``frame``, ``time``, ``track_id``, ``score``, ``box``,
    ``landmarks``, ``covariance``, ``expected_error`` and the :data:`~.base.ANALYSIS_COLUMNS` the file has (a
    file written before them still reads).

    Raises:
        LandmarkFileError: the header is not star-track's, or a row does not fit it.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",") if lines else []
    n = sum(1 for h in header if h[:1] == "x" and h[1:].isdigit())
    if header[:8 + 2 * n] != csv_header(n)[:8 + 2 * n] or header[8 + 5 * n:9 + 5 * n] != ["expected_error"]:
        raise LandmarkFileError(f"{path}: not a star-track landmarks CSV (its header is not "
                                "frame,time,track_id,score,box_x1,...)")
    try:
        rows = [[float(v) if v else np.nan for v in ln.split(",")] for ln in lines[1:] if ln.strip()]
        data = np.array(rows, np.float64).reshape(len(rows), len(header))
    except ValueError:
        raise LandmarkFileError(f"{path}: a row does not match the header (damaged file?)") from None
    cov = data[:, 8 + 2 * n:8 + 5 * n].reshape(-1, n, 3)
    full = np.stack([np.stack([cov[..., 0], cov[..., 1]], -1), np.stack([cov[..., 1], cov[..., 2]], -1)], -2)
    out = {"frame": data[:, 0].astype(int), "time": data[:, 1], "track_id": data[:, 2].astype(int),
           "score": data[:, 3], "box": data[:, 4:8], "landmarks": data[:, 8:8 + 2 * n].reshape(-1, n, 2),
           "covariance": full, "expected_error": data[:, 8 + 5 * n]}
    return out | {c: data[:, header.index(c)] for c in ANALYSIS_COLUMNS if c in header}
