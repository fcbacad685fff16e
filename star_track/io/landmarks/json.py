"""``.json`` landmark files: a valid JSON document after every frame; :func:`face_dict` and
:func:`faces_document`, the JSON of one face and of a still image's faces (``star-track image``)."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..claims import ClosedOnExit, open_exclusive
from .base import ANALYSIS_COLUMNS, COVARIANCE_LAYOUT, analysis_values, expected_error, flat_covariance, write_all, \
    write_failed


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


def face_dict(f) -> dict:
    """One face as a JSON-ready dict (``track_id, score, box, landmarks, covariance, expected_error`` and the
    :data:`~.base.ANALYSIS_COLUMNS`); non-finite numbers -> None."""
    score, err = float(f.score), expected_error(f)
    state = {k: round(v, 5) if np.isfinite(v) else None for k, v in zip(ANALYSIS_COLUMNS, analysis_values(f))}
    return {"track_id": int(f.track_id), "score": round(score, 5) if np.isfinite(score) else None,
            "box": _finite_or_none(np.round(np.asarray(f.box, np.float64).ravel(), 3)),
            "landmarks": _finite_or_none(np.round(np.asarray(f.landmarks, np.float64), 3)),
            "covariance": _finite_or_none(np.round(flat_covariance(f.covariance), 5)),
            "expected_error": round(err, 6) if np.isfinite(err) else None} | state


class JsonLandmarkWriter(ClosedOnExit):
    """See module docs: valid JSON after every frame (the closing brackets are rewritten each time)."""

    _TAIL = b"\n]}\n"

    def __init__(self, path: Path, num_points: int, scheme: str, fps: float, overwrite: bool = False):
        self.path = Path(path)
        self.frames_written = 0
        self._f = open_exclusive(self.path, overwrite, binary=True)
        head = json.dumps({"scheme": scheme, "num_points": num_points, "fps": fps,
                           "covariance_layout": list(COVARIANCE_LAYOUT),
                           "covariance_kind": "calibrated error covariance (frame px^2)"}, allow_nan=False)
        self._end = 0
        self._append(head[:-1].encode() + b', "frames": [')

    def _append(self, data: bytes) -> None:
        """Write ``data`` + the closing brackets at the end of the frame list. If that fails (disk full) the
        previous closing brackets are put back (over bytes that are already allocated) and the file cut there."""
        try:
            self._f.seek(self._end)
            write_all(self._f, data + self._TAIL)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.pwrite(self._f.fileno(), self._TAIL, self._end)
                os.ftruncate(self._f.fileno(), self._end + len(self._TAIL))
            raise write_failed(self.path, e, self.frames_written) from None
        self._end += len(data)

    def write(self, frame_index: int, time: float, faces: Sequence) -> None:
        rec = json.dumps({"frame": int(frame_index), "time": round(float(time), 6) if np.isfinite(time) else None,
                          "faces": [face_dict(f) for f in faces]}, separators=(",", ":"), allow_nan=False)
        self._append((b",\n" if self.frames_written else b"\n") + rec.encode())
        self.frames_written += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()




def faces_document(faces: Sequence, scheme: Any, image: str) -> str:
    """``{"image", "scheme", "num_points", "covariance_layout", "faces": [...]}`` as one strict-JSON line: the
    faces of a still image, as ``star-track image`` prints them and writes them to ``-l NAME.json``."""
    doc = {"image": image, "scheme": scheme.name, "num_points": scheme.num_points,
           "covariance_layout": list(COVARIANCE_LAYOUT), "faces": [face_dict(f) for f in faces]}
    return json.dumps(doc, allow_nan=False, separators=(",", ":"))
