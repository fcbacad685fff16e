"""A run report as one PNG, drawn with OpenCV only (matplotlib is not a core dependency).

One panel per track, stacked; in each panel, over time: the head angles (yaw, pitch, roll, degrees), the eye
openness (both eyes) and mouth openness with the blinks marked, and the face's expected error. Frames where the
track has no face are shaded grey. The inputs are plain arrays, one row per face per frame (the landmark-file
readers build them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from star_track.errors import OutputError, StarTrackError

from .blinks import Blink

_W, _PANEL_H, _MARGIN = 1200, 330, 70
_COLORS = {"yaw": (40, 40, 220), "pitch": (40, 160, 40), "roll": (200, 120, 20), "left_eye": (160, 60, 160),
           "right_eye": (60, 140, 200), "mouth": (30, 30, 30), "expected_error": (0, 110, 200)}


@dataclass
class RunSeries:
    """Per-face rows of a run (equal-length 1-D arrays); NaN where a value is unknown."""

    time: np.ndarray
    track_id: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    left_eye: np.ndarray
    right_eye: np.ndarray
    mouth: np.ndarray
    expected_error: np.ndarray


def _check(s: RunSeries) -> None:
    n = len(np.asarray(s.time))
    for name in RunSeries.__dataclass_fields__:
        a = np.asarray(getattr(s, name))
        if a.ndim != 1 or len(a) != n:
            raise StarTrackError(f"plot: column {name} must be 1-D with {n} rows, got shape {a.shape}")


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
        ok = np.isfinite(v)
        y = top + h - (np.clip(np.where(ok, v, lo), lo, hi) - lo) / (hi - lo) * h
        _polyline(img, xs, y, ok, gap, _COLORS[name], 1)
        cv2.putText(img, name, (legend_x, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, _COLORS[name], 1, cv2.LINE_AA)
        legend_x += 8 * len(name) + 14
    return xs


def render_report(series: RunSeries, blinks: list[Blink] | None = None, title: str = "star-track run",
                  frame_times: np.ndarray | None = None) -> np.ndarray:
    """Draw the report and return it as a BGR uint8 image (one panel per track).

    ``frame_times``: the time of every frame of the run (to mark frames where a track had no face); without
    it, the distinct times in ``series`` are used.
    """
    _check(series)
    t = np.asarray(series.time, np.float64)
    ids = np.asarray(series.track_id)
    tracks = [int(k) for k in np.unique(ids[np.isfinite(ids.astype(np.float64))])] if len(ids) else []
    if not tracks:
        raise StarTrackError("plot: no face in this run, nothing to draw")
    all_t = np.unique(t) if frame_times is None else np.asarray(frame_times, np.float64)
    t0, t1 = float(np.nanmin(all_t)), float(np.nanmax(all_t))
    img = np.full((40 + _PANEL_H * len(tracks), _W, 3), 255, np.uint8)
    cv2.putText(img, f"{title}  ({len(tracks)} track{'s' * (len(tracks) != 1)}, {t1 - t0:.1f} s)", (10, 26),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    blinks = blinks or []
    for p, k in enumerate(tracks):
        top = 40 + p * _PANEL_H
        sel = ids == k
        order = np.argsort(t[sel])
        tk = t[sel][order]

        def col(name, sel=sel, order=order):
            return np.asarray(getattr(series, name), np.float64)[sel][order]

        # A frame counts as missing for this track when the run has it but the track does not (or all NaN).
        present = set(np.round(tk[np.isfinite(col("yaw"))], 6).tolist())
        missing = [m for m in all_t if round(float(m), 6) not in present]
        cv2.putText(img, f"track {k}", (10, top + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 160), 1, cv2.LINE_AA)
        y = top + 24
        _strip(img, y, 110, tk, t0, t1, [(n, col(n)) for n in ("yaw", "pitch", "roll")], -90, 90,
               "angles", missing)
        y += 116
        _strip(img, y, 110, tk, t0, t1, [(n, col(n)) for n in ("left_eye", "right_eye", "mouth")], 0, 2,
               "openness", missing)
        span = max(t1 - t0, 1e-9)
        for b in blinks:
            if b.track_id != k:
                continue
            xa = int(_MARGIN + (b.start - t0) / span * (_W - 20 - _MARGIN))
            xb = max(xa + 2, int(_MARGIN + (b.end - t0) / span * (_W - 20 - _MARGIN)))
            band = img[y + 1:y + 110, xa:xb + 1]
            band[:] = (0.6 * band + 0.4 * np.array([170, 170, 255])).astype(np.uint8)  # translucent: lines show
            cv2.rectangle(img, (xa, y + 1), (xb, y + 6), (0, 0, 255), -1)  # solid mark on top
        y += 116
        err = col("expected_error")
        hi = float(np.nanmax(err)) * 1.1 if np.isfinite(err).any() and np.nanmax(err) > 0 else 0.1
        _strip(img, y, 70, tk, t0, t1, [("expected_error", err)], 0, round(hi, 3), "exp. error", missing)
    return img


def write_report(path: str | Path, series: RunSeries, blinks: list[Blink] | None = None,
                 title: str = "star-track run", frame_times: np.ndarray | None = None) -> Path:
    """Render :func:`render_report` and write it as a PNG; raises :class:`OutputError` if it cannot."""
    path = Path(path)
    img = render_report(series, blinks, title, frame_times)
    try:
        ok = cv2.imwrite(str(path), img)
    except cv2.error as e:
        raise OutputError(f"cannot write report {path}: {e}") from None
    if not ok:
        raise OutputError(f"cannot write report {path} (folder missing or not writable, or not a .png name)")
    return path
