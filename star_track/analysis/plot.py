"""A run report as one PNG, drawn with OpenCV only (matplotlib is not a core dependency).

One panel per track, stacked; in each panel, over time: the head angles (yaw, pitch, roll, degrees), the eye
openness (both eyes) and mouth openness with the blinks marked, and the face's expected error. Frames where the
track has no face (or no pose) are shaded grey.

Input: plain arrays, what a landmark-file reader has. Either one mapping of columns per track
(``{track_id: {"time": ..., "yaw": ..., ...}}``) or the flat rows of a whole run split with
:func:`series_by_track`. The column names are the output columns (:data:`REPORT_COLUMNS`): ``time`` is required, any
other column may be missing (drawn as unknown), but a run with none of the analysis columns is an error (a file
written without head pose, or by an older version). ``blink`` is the per-row flag (1 while the eyes are closed in
a blink); its runs are marked, as are :class:`~.blinks.Blink` events given directly.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import ArrayLike

from star_track.errors import OutputError, StarTrackError

from .blinks import Blink

REPORT_COLUMNS: tuple[str, ...] = ("time", "yaw", "pitch", "roll", "eye_open_left", "eye_open_right", "mouth_open",
                                   "blink", "expected_error")
"""The columns the report reads (``time`` required; the names of the landmark files' columns)."""
_ANALYSIS = ("yaw", "pitch", "roll", "eye_open_left", "eye_open_right", "mouth_open")

_W, _PANEL_H, _MARGIN = 1200, 330, 70
_COLORS = {"yaw": (40, 40, 220), "pitch": (40, 160, 40), "roll": (200, 120, 20), "eye_open_left": (160, 60, 160),
           "eye_open_right": (60, 140, 200), "mouth_open": (30, 30, 30), "expected_error": (0, 110, 200)}


@dataclass
class TrackSeries:
    """One track's rows in time order (equal-length 1-D float arrays; NaN where unknown)."""

    time: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    eye_open_left: np.ndarray
    eye_open_right: np.ndarray
    mouth_open: np.ndarray
    blink: np.ndarray
    """1 while the eyes are closed in a blink, else 0."""
    expected_error: np.ndarray


def track_series(columns: Mapping[str, ArrayLike] | TrackSeries) -> TrackSeries:
    """A :class:`TrackSeries` from a mapping of :data:`REPORT_COLUMNS` (missing ones NaN, ``blink`` 0), in time
    order."""
    if isinstance(columns, TrackSeries):
        columns = {f.name: np.asarray(getattr(columns, f.name)) for f in fields(TrackSeries)}
    if "time" not in columns:
        raise StarTrackError("plot: a track has no 'time' column")
    t = np.asarray(columns["time"], dtype=np.float64)
    if t.ndim != 1:
        raise StarTrackError(f"plot: column time must be 1-D, got shape {t.shape}")
    out = {}
    for name in REPORT_COLUMNS:
        a = np.asarray(columns.get(name, 0.0 if name == "blink" else np.nan), dtype=np.float64)
        a = np.broadcast_to(a, t.shape) if a.ndim == 0 else a
        if a.shape != t.shape:
            raise StarTrackError(f"plot: column {name} must be 1-D with {len(t)} rows, got shape {a.shape}")
        out[name] = a
    order = np.argsort(t, kind="stable")
    return TrackSeries(**{k: v[order] for k, v in out.items()})


def series_by_track(columns: Mapping[str, ArrayLike]) -> dict[int, TrackSeries]:
    """Split the flat rows of a run (one row per face per frame, a ``track_id`` column and :data:`REPORT_COLUMNS`)
    into one :class:`TrackSeries` per track."""
    if "track_id" not in columns:
        raise StarTrackError("plot: the rows have no 'track_id' column")
    ids = np.asarray(columns["track_id"])
    out = {}
    for k in np.unique(ids).tolist():
        sel = ids == k
        out[int(k)] = track_series({n: np.asarray(v)[sel] if np.ndim(v) else v for n, v in columns.items()
                                    if n in REPORT_COLUMNS})
    return out


def _polyline(img, x, y, ok, breaks, color, thickness=1):
    # Break the line where values are missing so gaps stay visible.
    seg: list[tuple[int, int]] = []
    for xi, yi, o, g in zip(x, y, ok, breaks):
        if g and len(seg) > 1:
            cv2.polylines(img, [np.array(seg, np.int32)], False, color, thickness, cv2.LINE_AA)
        if g:
            seg = []
        if o:
            seg.append((int(xi), int(yi)))
        elif seg:
            if len(seg) > 1:
                cv2.polylines(img, [np.array(seg, np.int32)], False, color, thickness, cv2.LINE_AA)
            seg = []
    if len(seg) > 1:
        cv2.polylines(img, [np.array(seg, np.int32)], False, color, thickness, cv2.LINE_AA)
    elif len(seg) == 1:
        cv2.circle(img, seg[0], 1, color, -1)


def _strip(img, top, h, t, t0, t1, series, lo, hi, label, missing):
    """One plot strip: rows top..top+h, values scaled lo..hi."""
    x0, x1 = _MARGIN, _W - 20
    cv2.rectangle(img, (x0, top), (x1, top + h), (200, 200, 200), 1)
    span = max(t1 - t0, 1e-9)
    xs = x0 + (t - t0) / span * (x1 - x0)
    for m in missing:  # grey band per frame without a face
        xa = int(x0 + (m - t0) / span * (x1 - x0))
        cv2.line(img, (xa, top + 1), (xa, top + h - 1), (215, 215, 215), 2)
    cv2.putText(img, label, (4, top + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"{hi:g}", (4, top + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, f"{lo:g}", (4, top + h - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    if lo < 0 < hi:
        yz = int(top + h - (0 - lo) / (hi - lo) * h)
        cv2.line(img, (x0, yz), (x1, yz), (225, 225, 225), 1)
    legend_x = x0 + 5
    # Rows further apart than 1.5 frame intervals have missing frames between them: break the line there.
    gap = np.zeros(len(t), bool)
    if len(t) > 2:
        dt = np.diff(t)
        step = float(np.median(dt)) if np.median(dt) > 0 else 0.0
        gap[1:] = dt > 1.5 * step if step > 0 else False
    for name, v in series:
        ok = np.isfinite(v)  # (a missing value breaks the line)
        y = top + h - (np.clip(np.where(ok, v, lo), lo, hi) - lo) / (hi - lo) * h
        _polyline(img, xs, y, ok, gap, _COLORS[name], 1)
        cv2.putText(img, name, (legend_x, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, _COLORS[name], 1, cv2.LINE_AA)
        legend_x += 8 * len(name) + 14
    return xs


def _blink_spans(tr: TrackSeries, events: Sequence[Blink], track_id: int) -> list[tuple[float, float]]:
    """(start, end) times of the track's blinks: runs of the ``blink`` flag (ending at the next row) and events."""
    spans = [(b.start, b.end) for b in events if b.track_id == track_id]
    flag = tr.blink > 0.5
    if flag.any():
        edges = np.flatnonzero(np.diff(np.r_[0, flag.astype(np.int8), 0]))
        t_next = np.r_[tr.time[1:], tr.time[-1]]
        spans += [(float(tr.time[a]), float(t_next[b - 1])) for a, b in zip(edges[::2], edges[1::2])]
    return spans


def _panel(img: np.ndarray, top: int, k: int, tr: TrackSeries, all_t: np.ndarray, t0: float, t1: float,
           spans: list[tuple[float, float]]) -> None:
    tk = tr.time
    # A frame counts as missing for this track when the run has it but the track does not (or has no pose).
    present = set(np.round(tk[np.isfinite(tr.yaw) | np.isfinite(tr.eye_open_left)], 6).tolist())
    missing = [m for m in all_t.tolist() if round(float(m), 6) not in present]
    cv2.putText(img, f"track {k}", (10, top + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 160), 1, cv2.LINE_AA)
    y = top + 24
    _strip(img, y, 110, tk, t0, t1, [(n, getattr(tr, n)) for n in ("yaw", "pitch", "roll")], -90, 90,
           "angles", missing)
    y += 116
    _strip(img, y, 110, tk, t0, t1, [(n, getattr(tr, n)) for n in ("eye_open_left", "eye_open_right",
                                                                     "mouth_open")], 0, 2, "openness", missing)
    span = max(t1 - t0, 1e-9)
    for a, b in spans:
        xa = int(_MARGIN + (a - t0) / span * (_W - 20 - _MARGIN))
        xb = max(xa + 2, int(_MARGIN + (b - t0) / span * (_W - 20 - _MARGIN)))
        band = img[y + 1:y + 110, xa:xb + 1]
        band[:] = (0.6 * band + 0.4 * np.array([170, 170, 255])).astype(np.uint8)  # translucent: lines show
        cv2.rectangle(img, (xa, y + 104), (xb, y + 109), (0, 0, 255), -1)  # solid mark at the foot: the legend is on top
    y += 116
    err = tr.expected_error
    hi = float(np.nanmax(err)) * 1.1 if np.isfinite(err).any() and np.nanmax(err) > 0 else 0.1
    _strip(img, y, 70, tk, t0, t1, [("expected_error", err)], 0, round(hi, 3), "exp. error", missing)


def render_report(tracks: Mapping[int, TrackSeries | Mapping[str, ArrayLike]], *, frame_times: np.ndarray | None = None,
                  blinks: Sequence[Blink] = (), title: str = "star-track run") -> np.ndarray:
    """Draw the report and return it as a BGR uint8 image (one panel per track, in track-id order).

    ``frame_times``: the time of every frame of the run, to shade the frames where a track had no face
    (without it, the times of all tracks' rows). ``blinks``: events to mark besides the ``blink`` flags.
    """
    series = {int(k): track_series(v) for k, v in tracks.items()}
    series = {k: v for k, v in sorted(series.items()) if len(v.time)}
    if not series:
        raise StarTrackError("plot: no face in this run, nothing to draw")
    if not any(np.isfinite(getattr(s, n)).any() for s in series.values() for n in _ANALYSIS):
        raise StarTrackError("plot: no head-pose or openness values (columns " + ", ".join(_ANALYSIS) +
                             "): the file was written without face analysis or by an older version")
    all_t = (np.unique(np.concatenate([s.time for s in series.values()])) if frame_times is None
             else np.asarray(frame_times, np.float64))
    t0, t1 = float(np.nanmin(all_t)), float(np.nanmax(all_t))
    img = np.full((40 + _PANEL_H * len(series), _W, 3), 255, np.uint8)
    n = len(series)
    cv2.putText(img, f"{title}  ({n} track{'s' * (n != 1)}, {t1 - t0:.1f} s)", (10, 26),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for p, (k, tr) in enumerate(series.items()):
        _panel(img, 40 + p * _PANEL_H, k, tr, all_t, t0, t1, _blink_spans(tr, blinks, k))
    return img


def write_report(path: str | Path, tracks: Mapping[int, TrackSeries | Mapping[str, ArrayLike]], *,
                 frame_times: np.ndarray | None = None, blinks: Sequence[Blink] = (),
                 title: str = "star-track run") -> Path:
    """Render :func:`render_report` and write it as a PNG; raises :class:`OutputError` if it cannot."""
    path = Path(path)
    img = render_report(tracks, frame_times=frame_times, blinks=blinks, title=title)
    try:
        ok = cv2.imwrite(str(path), img)
    except cv2.error as e:
        raise OutputError(f"cannot write report {path}: {e}") from None
    if not ok:
        raise OutputError(f"cannot write report {path} (folder missing or not writable, or not a .png name)")
    return path
