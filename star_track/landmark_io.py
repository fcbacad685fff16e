"""Landmark files: one record per (frame, face) in ``.csv``, ``.json`` or ``.npz``, written as frames arrive.

Every record holds the frame index, time (s), track id, score, box (x1, y1, x2, y2), the smoothed landmarks
(x, y), each landmark's covariance (xx, xy, yy) in frame pixels² and the face's ``expected_error``. The
covariance is the *calibrated* error covariance (``Face.covariance``, see :mod:`star_track.uncertainty`), not
the raw STAR heatmap spread; ``expected_error`` is the predicted NME (fraction of the outer-eye-corner
distance): filter bad frames by it. No file ever holds ``NaN``/``Infinity``: a non-finite number is ``null``
in JSON and an empty field in CSV (strict JSON parsers accept the files).

* ``.csv`` — one row per face and frame, flushed after every frame; frames without faces have no row. Columns
  (all names unique): ``frame, time, track_id, score, box_x1, box_y1, box_x2, box_y2, x0, y0, x1, y1, ...,
  cxx0, cxy0, cyy0, cxx1, ..., expected_error`` (:func:`csv_header`). ``-`` as the path writes it to stdout.
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

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .errors import OutputClosed, OutputError
from .output_files import ClosedOnExit, OutputClaim, open_exclusive
from .video import VideoError, check_output_path

_os_write = os.write  # the one low-level write (tests simulate a disk filling up mid-write through it)


def _write_all(f, data: bytes) -> None:
    """Write all of ``data`` to the unbuffered file ``f`` (os.write may write part of it)."""
    view = memoryview(data)
    while view:
        n = _os_write(f.fileno(), view)
        view = view[n:]


def _write_failed(path: Path, e: OSError, frames: int) -> VideoError:
    reason = "No space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return VideoError(f"{path}: {reason} (kept the {frames} complete frames written before)")

FORMATS = (".csv", ".json", ".npz", ".parquet")


class LandmarkWriter(Protocol):
    """What every landmark writer offers; ``with writer:`` closes it (the file is complete afterwards)."""

    path: Path
    frames_written: int

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        """Record one frame's faces (an empty list records a frame without faces)."""
        ...

    def close(self) -> None:
        """Finish the file (complete and valid after this; idempotent)."""
        ...

    def __enter__(self) -> "LandmarkWriter": ...

    def __exit__(self, *exc: object) -> None: ...


def csv_header(num_points: int) -> list[str]:
    """The CSV columns: ``frame, time, track_id, score, box_x1..box_y2, x0, y0, ..., cxx0, cxy0, cyy0, ...,
    expected_error``."""
    header = ["frame", "time", "track_id", "score", "box_x1", "box_y1", "box_x2", "box_y2"]
    header += [f"{a}{i}" for i in range(num_points) for a in ("x", "y")]
    header += [f"{c}{i}" for i in range(num_points) for c in ("cxx", "cxy", "cyy")]
    return header + ["expected_error"]


def _fmt(values, spec: str) -> list[str]:
    """Numbers as CSV fields; non-finite ones as empty fields (never ``nan``/``inf``)."""
    return [format(v, spec) if np.isfinite(v) else "" for v in np.asarray(values, np.float64).ravel()]


def _finite_or_none(a):
    """Nested lists of floats with non-finite values as None (JSON ``null``)."""
    a = np.asarray(a, np.float64)
    out = np.where(np.isfinite(a), a, 0.0).tolist()
    if np.isfinite(a).all():
        return out
    mask = np.isfinite(a).tolist()

    def merge(v, m):
        return [merge(x, y) for x, y in zip(v, m)] if isinstance(v, list) else (v if m else None)

    return merge(out, mask)


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
            _write_all(self._f, buf.getvalue().encode("utf-8"))
        except OSError as e:
            if self._stream:
                if isinstance(e, BrokenPipeError):  # e.g. `| head`: the reader has all it wanted
                    raise OutputClosed(f"{self.path}: closed by its reader after {self.frames_written} frames") \
                        from None
                raise _write_failed(self.path, e, self.frames_written) from None
            os.ftruncate(self._f.fileno(), self._good)  # shrinking needs no space
            raise _write_failed(self.path, e, self.frames_written) from None
        self._good = self._f.tell()

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        rows = []
        for f in faces:
            cov = np.asarray(f.covariance)
            row = [frame_index, *_fmt([time], ".6f"), f.track_id, *_fmt([f.score], ".5f")]
            row += _fmt(f.box, ".3f") + _fmt(f.landmarks, ".3f")
            row += _fmt(np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]], 1), ".5g")
            row += _fmt([_expected_error(f)], ".5g")
            rows.append(row)
        if rows:
            self._append(rows)
        self.frames_written += 1

    def close(self) -> None:
        if self._stream:
            return
        if not self._f.closed:
            self._f.close()


def _expected_error(f) -> float:
    return float(getattr(f, "expected_error", float("nan")))


def face_dict(f) -> dict:
    """One face as a JSON-ready dict (``track_id, score, box, landmarks, covariance, expected_error``);
    non-finite numbers -> None."""
    cov = np.asarray(f.covariance, np.float64)
    score, err = float(f.score), _expected_error(f)
    return {"track_id": int(f.track_id), "score": round(score, 5) if np.isfinite(score) else None,
            "box": _finite_or_none(np.round(np.asarray(f.box, np.float64).ravel(), 3)),
            "landmarks": _finite_or_none(np.round(np.asarray(f.landmarks, np.float64), 3)),
            "covariance": _finite_or_none(np.round(np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]], 1), 5)),
            "expected_error": round(err, 6) if np.isfinite(err) else None}


class JsonLandmarkWriter(ClosedOnExit):
    """See module docs: valid JSON after every frame (the closing brackets are rewritten each time)."""

    _TAIL = b"\n]}\n"

    def __init__(self, path: Path, num_points: int, scheme: str, fps: float, overwrite: bool = False):
        self.path = Path(path)
        self.frames_written = 0
        self._f = open_exclusive(self.path, overwrite, binary=True)
        head = json.dumps({"scheme": scheme, "num_points": num_points, "fps": fps,
                           "covariance_layout": ["xx", "xy", "yy"],
                           "covariance_kind": "calibrated error covariance (frame px^2)"}, allow_nan=False)
        self._end = 0
        self._append(head[:-1].encode() + b', "frames": [')

    def _append(self, data: bytes) -> None:
        """Write ``data`` + the closing brackets at the end of the frame list. If that fails (disk full) the
        previous closing brackets are put back (over bytes that are already allocated) and the file cut there."""
        try:
            self._f.seek(self._end)
            _write_all(self._f, data + self._TAIL)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.pwrite(self._f.fileno(), self._TAIL, self._end)
                os.ftruncate(self._f.fileno(), self._end + len(self._TAIL))
            raise _write_failed(self.path, e, self.frames_written) from None
        self._end += len(data)

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        rec = json.dumps({"frame": int(frame_index), "time": round(float(time), 6) if np.isfinite(time) else None,
                          "faces": [face_dict(f) for f in faces]}, separators=(",", ":"), allow_nan=False)
        self._append((b",\n" if self.frames_written else b"\n") + rec.encode())
        self.frames_written += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class NpzLandmarkWriter(ClosedOnExit):
    """See module docs. Each frame's records go to the spool in one piece; a write that fails (disk full) is
    rolled back to the last whole frame, and :meth:`close` frees the spool before writing the archive, so a
    disk that filled up still gets the archive of the frames before (when it fits in the space the spool
    held). A failure names this file and the reason and leaves no hidden partial, spool or claim behind."""

    _FIELDS = {"frame": np.int64, "time": np.float64, "track_id": np.int64, "score": np.float32,
               "box": np.float32, "landmarks": np.float32, "raw_landmarks": np.float32, "covariance": np.float32,
               "expected_error": np.float32}

    def __init__(self, path: Path, num_points: int, scheme: str, fps: float, overwrite: bool = False):
        self.path = Path(path)
        self.frames_written = 0
        self.num_points, self.scheme, self.fps = num_points, scheme, fps
        self._claim = OutputClaim(self.path, overwrite)  # also removes stale spools of killed runs
        self._closed = False
        try:
            # The pid in the name lets a later run recognise the spool of a killed one (output_files).
            self._dir = tempfile.TemporaryDirectory(prefix=f".star-track-{os.getpid()}-", dir=self.path.parent)
            self._spool = {k: open(Path(self._dir.name) / k, "wb", buffering=0) for k in self._FIELDS}
        except OSError as e:
            self._closed = True
            with contextlib.suppress(Exception):
                self._dir.cleanup()
            self._claim.release()
            raise _write_failed(self.path, e, 0) from None
        self._good = dict.fromkeys(self._FIELDS, 0)  # spool sizes after the last whole frame
        self._rows = 0

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        if self._closed:
            raise VideoError(f"{self.path}: writer is closed")
        parts: dict[str, list[bytes]] = {k: [] for k in self._FIELDS}
        for f in faces:
            vals = {"frame": frame_index, "time": time, "track_id": f.track_id, "score": f.score, "box": f.box,
                    "landmarks": f.landmarks, "raw_landmarks": f.raw_landmarks, "covariance": f.covariance,
                    "expected_error": _expected_error(f)}
            for k, dtype in self._FIELDS.items():
                parts[k].append(np.asarray(vals[k], dtype).tobytes())
        if faces:
            try:
                for k, chunks in parts.items():
                    _write_all(self._spool[k], b"".join(chunks))
            except OSError as e:
                with contextlib.suppress(OSError):
                    for k, spool in self._spool.items():  # shrinking needs no space
                        os.ftruncate(spool.fileno(), self._good[k])
                        spool.seek(self._good[k])
                raise _write_failed(self.path, e, self.frames_written) from None
            self._good = {k: spool.tell() for k, spool in self._spool.items()}
            self._rows += len(faces)
        self.frames_written += 1

    def close(self) -> None:
        """Assemble the archive from the spool and move it into place (idempotent); SIGINT/SIGTERM arriving
        meanwhile are delivered when it is done."""
        if self._closed:
            return
        from ._entry import deferred_signals

        with deferred_signals():
            self._closed = True
            tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}.npz")
            try:
                n = self.num_points
                shapes = {"box": (4,), "landmarks": (n, 2), "raw_landmarks": (n, 2), "covariance": (n, 2, 2)}
                arrays = {}
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
                raise OutputError(f"{self.path}: {_reason(e)} (the archive of {self.frames_written} frames could "
                                  "not be written)") from None
            self._claim.commit(tmp)


def _reason(e: BaseException) -> str:
    """The words for an exception in a one-line message: "No space left on device" for a full disk."""
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e):
        return "No space left on device"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def check_landmarks_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`~star_track.video.check_output_path` plus a supported extension (``.csv``, ``.json``, ``.npz``,
    ``.parquet``; the last needs pyarrow)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise VideoError(f"{p}: unsupported landmarks format {ext or '(none)'} (use .csv, .json, .npz or .parquet)")
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise VideoError(f"{p}: .parquet needs pyarrow (pip install 'star-track[parquet]')") from None
    return check_output_path(p, overwrite)


def open_landmark_writer(path: str | os.PathLike, num_points: int, scheme: str, fps: float,
                         overwrite: bool = False) -> LandmarkWriter:
    """A writer chosen by extension (``.csv``, ``.json``, ``.npz``, ``.parquet``).

    Raises:
        VideoError: unknown extension, existing file without ``overwrite``, unwritable location.
    """
    p = check_landmarks_path(path, overwrite)
    ext = p.suffix.lower()
    if ext == ".parquet":
        from .parquet_io import ParquetLandmarkWriter as cls
    else:
        cls = {".csv": CsvLandmarkWriter, ".json": JsonLandmarkWriter, ".npz": NpzLandmarkWriter}[ext]
    try:
        return cls(p, num_points, scheme, fps, overwrite=overwrite)
    except OSError as e:
        raise VideoError(f"{p}: cannot write ({e.strerror or e})") from None


def read_landmarks_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a landmarks CSV back (empty fields as NaN): ``frame``, ``time``, ``track_id``, ``score``, ``box``,
    ``landmarks``, ``covariance``, ``expected_error``."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    n = (len(lines[0].split(",")) - 9) // 5 if lines else 0
    rows = [[float(v) if v else np.nan for v in ln.split(",")] for ln in lines[1:] if ln.strip()]
    data = np.array(rows, np.float64).reshape(len(rows), 9 + 5 * n)
    cov = data[:, 8 + 2 * n:8 + 5 * n].reshape(-1, n, 3)
    full = np.stack([np.stack([cov[..., 0], cov[..., 1]], -1), np.stack([cov[..., 1], cov[..., 2]], -1)], -2)
    return {"frame": data[:, 0].astype(int), "time": data[:, 1], "track_id": data[:, 2].astype(int),
            "score": data[:, 3], "box": data[:, 4:8], "landmarks": data[:, 8:8 + 2 * n].reshape(-1, n, 2),
            "covariance": full, "expected_error": data[:, -1]}
