"""Landmark files: one record per (frame, face) in ``.csv``, ``.json`` or ``.npz``, written as frames arrive.

Every record holds the frame index, time (s), track id, score, box (x1, y1, x2, y2), the smoothed landmarks
(x, y), each landmark's covariance (xx, xy, yy) in frame pixels² and the face's ``expected_error``. The
covariance is the *calibrated* error covariance (``Face.covariance``, see :mod:`star_track.uncertainty`), not
the raw STAR heatmap spread; ``expected_error`` is the predicted NME (fraction of the outer-eye-corner
distance): filter bad frames by it. No file ever holds ``NaN``/``Infinity``: a non-finite number is ``null``
in JSON and an empty field in CSV (strict JSON parsers accept the files).

Every format also holds the face state (:data:`~.base.ANALYSIS_COLUMNS`, after ``expected_error``): ``yaw,
pitch, roll`` (degrees) and ``yaw_sd, pitch_sd, roll_sd``, ``eye_open_left, eye_open_right, mouth_open`` and
``blink`` (1 while the eyes are closed in a blink, else 0); unknown (no pose, ``--no-analysis``) = empty / null
/ NaN. :func:`~.read.read_landmarks` reads any of the four formats back (files written before these columns too).

* ``.csv`` — one row per face and frame, flushed after every frame; frames without faces have no row. Columns
  (all names unique): ``frame, time, track_id, score, box_x1, box_y1, box_x2, box_y2, x0, y0, x1, y1, ...,
  cxx0, cxy0, cyy0, cxx1, ..., expected_error, yaw, ..., blink`` (:func:`csv_header`). ``-`` as the path writes it to stdout.
* ``.json`` — ``{"scheme", "num_points", "fps", "frames": [{"frame", "time", "faces": [...]}, ...]}`` with
  every frame listed (also those without faces). The file is rewritten in place so that it is a complete,
  valid JSON document after every flushed frame.
* ``.npz`` — arrays ``frame``, ``time``, ``track_id``, ``score``, ``expected_error`` (M,), ``box`` (M, 4),
  ``landmarks``, ``raw_landmarks`` (M, N, 2), ``covariance`` (M, N, 2, 2) with M = number of (frame, face) records, plus
  ``frame_count``, ``fps``, ``scheme``. Records are spooled to disk while running (bounded memory) and the
  archive is assembled by :meth:`close`, so it needs a clean finish (normal end, Ctrl-C, SIGTERM).
* ``.parquet`` (needs ``pyarrow``: the ``parquet`` extra) — one row per face and frame with columns ``frame``,
  ``time``, ``track_id``, ``score`` and list columns ``box`` (4), ``landmarks`` (2N: x0, y0, x1, ...),
  ``covariance`` (3N: xx0, xy0, yy0, ...) and ``expected_error``; ``scheme``, ``num_points``, ``fps`` and ``frame_count`` in the
  schema metadata. ``pandas.read_parquet(path)`` / ``polars.read_parquet(path)`` read it. Written like
  ``.npz``: on a clean finish.
"""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import MissingDependency, OutputError
from ..paths import check_output_path
from .base import ANALYSIS_COLUMNS, FORMATS, LandmarkWriter
from .csv import CsvLandmarkWriter, LandmarkFileError, csv_header, read_landmarks_csv
from .json import JsonLandmarkWriter, face_dict, faces_document
from .npz import NpzLandmarkWriter
from .read import read_landmarks

PARQUET_HINT = 'pip install "star-track[parquet]"'
"""The install command for ``.parquet`` support (pyarrow)."""


def check_landmarks_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`~star_track.io.paths.check_output_path` plus a supported extension (``.csv``, ``.json``, ``.npz``,
    ``.parquet``; the last needs pyarrow)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise OutputError(f"{p}: unsupported landmarks format {ext or '(none)'} (use .csv, .json, .npz or .parquet)")
    if ext == ".parquet":
        require_pyarrow(str(p))
    return check_output_path(p, overwrite)


def require_pyarrow(what: str) -> None:
    """Raise :class:`~star_track.errors.MissingDependency` naming ``what`` unless pyarrow is installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingDependency(f"{what}: .parquet needs pyarrow: {PARQUET_HINT}") from None


def open_landmark_writer(path: str | os.PathLike, num_points: int, scheme: str, fps: float,
                         overwrite: bool = False) -> LandmarkWriter:
    """A writer chosen by extension (``.csv``, ``.json``, ``.npz``, ``.parquet``).

    Raises:
        OutputError: unknown extension, existing file without ``overwrite``, unwritable location.
        MissingDependency: ``.parquet`` without pyarrow.
    """
    p = check_landmarks_path(path, overwrite)
    ext = p.suffix.lower()
    cls: type
    if ext == ".parquet":
        from .parquet import ParquetLandmarkWriter as cls
    else:
        cls = {".csv": CsvLandmarkWriter, ".json": JsonLandmarkWriter, ".npz": NpzLandmarkWriter}[ext]
    try:
        return cls(p, num_points, scheme, fps, overwrite=overwrite)
    except OSError as e:
        raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None


__all__ = ["ANALYSIS_COLUMNS", "FORMATS", "LandmarkFileError", "read_landmarks", "CsvLandmarkWriter", "JsonLandmarkWriter", "LandmarkWriter", "NpzLandmarkWriter",
           "PARQUET_HINT", "check_landmarks_path", "csv_header", "face_dict", "faces_document",
           "open_landmark_writer", "read_landmarks_csv", "require_pyarrow"]
