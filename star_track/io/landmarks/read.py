"""Read any landmark file back (:func:`read_landmarks`): ``.csv``, ``.json`` (a video's or ``star-track image``'s
document), ``.npz`` and ``.parquet``, into the same flat per-(frame, face) arrays.

Every format gives ``frame``, ``time``, ``track_id``, ``score``, ``expected_error`` (M,), ``box`` (M, 4),
``landmarks`` (M, N, 2), ``covariance`` (M, N, 2, 2), ``frame_times`` (the time of every frame the file lists;
for CSV only the frames with a face) and the :data:`~.base.ANALYSIS_COLUMNS` the file holds: a file written
before them still reads, without those keys. A file that is not star-track's raises
:class:`~.csv.LandmarkFileError` (one line naming it).
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import MissingDependency
from .base import ANALYSIS_COLUMNS
from .csv import LandmarkFileError, read_landmarks_csv

_KEYS = ("track_id", "score", "box", "landmarks", "covariance", "expected_error")


def _full_cov(flat: np.ndarray, n: int) -> np.ndarray:
    c = np.asarray(flat, np.float64).reshape(-1, n, 3)
    return np.stack([np.stack([c[..., 0], c[..., 1]], -1), np.stack([c[..., 1], c[..., 2]], -1)], -2)


def _nan(v: Any) -> Any:
    """JSON nulls (nested) as NaN."""
    return [_nan(x) for x in v] if isinstance(v, list) else (np.nan if v is None else v)


def _read_json(path: Path) -> dict[str, np.ndarray]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        n = int(doc["num_points"])
        frames = doc["frames"] if "frames" in doc else [{"frame": 0, "time": 0.0, "faces": doc["faces"]}]
        rows = [(fr["frame"], fr["time"], f) for fr in frames for f in fr["faces"]]
        faces = [f for *_, f in rows]
        out: dict[str, np.ndarray] = {"frame": np.array([r[0] for r in rows], np.int64).reshape(-1),
               "time": np.array(_nan([r[1] for r in rows]), np.float64).reshape(-1),
               "frame_times": np.array(_nan([fr["time"] for fr in frames]), np.float64).reshape(-1)}
        for k in _KEYS:
            out[k] = np.array(_nan([f[k] for f in faces]), np.int64 if k == "track_id" else np.float64)
        for c in ANALYSIS_COLUMNS:
            if faces and all(c in f for f in faces):
                out[c] = np.array(_nan([f[c] for f in faces]), np.float64)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise LandmarkFileError(f"{path}: not a star-track landmarks JSON ({type(e).__name__}: {e})") from None
    out["box"] = out["box"].reshape(-1, 4)
    out["landmarks"] = out["landmarks"].reshape(-1, n, 2)
    out["covariance"] = _full_cov(out["covariance"], n)
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        out = {k: d[k] for k in ("frame", "time", *_KEYS, "raw_landmarks")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise LandmarkFileError(f"{path}: not a star-track landmarks .npz ({type(e).__name__}: {e})") from None
    return out | {c: d[c].astype(np.float64) for c in ANALYSIS_COLUMNS if c in d}


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(f'{path}: .parquet needs pyarrow: pip install "star-track[parquet]"') from None

    try:
        table = pq.read_table(str(path))
        meta = json.loads((table.schema.metadata or {})[b"star_track"])
        n = int(meta["num_points"])
        col = {name: table.column(name).to_pylist() for name in table.column_names}
        out = {k: np.array(_nan(col[k]), np.float64) for k in ("time", "score", "expected_error")}
        out |= {"frame": np.array(col["frame"], np.int64), "track_id": np.array(col["track_id"], np.int64),
                "box": np.array(_nan(col["box"]), np.float64).reshape(-1, 4),
                "landmarks": np.array(_nan(col["landmarks"]), np.float64).reshape(-1, n, 2),
                "covariance": _full_cov(np.array(_nan(col["covariance"]), np.float64), n)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LandmarkFileError(f"{path}: not a star-track landmarks .parquet ({type(e).__name__}: {e})") from None
    return out | {c: np.array(_nan(col[c]), np.float64) for c in ANALYSIS_COLUMNS if c in col}


def read_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The records of a landmark file of any format (see module docs).

    Raises:
        FileNotFoundError: no such file.
        LandmarkFileError: not a star-track landmark file, or an unknown extension.
        MissingDependency: ``.parquet`` without pyarrow.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    ext = p.suffix.lower()
    if ext == ".csv":
        try:
            out = read_landmarks_csv(p)
        except UnicodeDecodeError:
            raise LandmarkFileError(f"{p}: not a star-track landmarks CSV (not text)") from None
        return out | {"frame_times": np.unique(out["time"])}
    if ext == ".json":
        return _read_json(p)
    if ext == ".npz":
        out = _read_npz(p)
        return out | {"frame_times": np.unique(out["time"])}
    if ext == ".parquet":
        out = _read_parquet(p)
        return out | {"frame_times": np.unique(out["time"])}
    raise LandmarkFileError(f"{p}: unknown landmarks format {ext or '(none)'} (.csv, .json, .npz or .parquet)")
