"""Run report PNG (issue 28): written with OpenCV from plain per-track arrays, read back and checked."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from star_track.analysis.blinks import Blink
from star_track.analysis.plot import render_report, series_by_track, track_series, write_report
from star_track.errors import OutputError, StarTrackError


def _rows(two_tracks=True):
    """Flat rows of a run, as a landmark-file reader has them (track 2 has no face for 20 frames)."""
    t = np.arange(100) / 25.0
    rows = []
    for k in (1, 2) if two_tracks else (1,):
        keep = np.ones(100, bool)
        if k == 2:
            keep[30:50] = False
        tt = t[keep]
        s = 1.0 if k == 1 else -1.0
        blink = np.zeros(len(tt))
        if k == 1:
            blink[25:30] = 1  # eyes closed 1.0-1.2 s
        rows.append(dict(time=tt, track_id=np.full(len(tt), k), yaw=s * 40 * np.sin(tt), pitch=10 * np.cos(tt),
                         roll=np.full(len(tt), 5.0 * k), eye_open_left=np.where(blink > 0, 0.1, 1.2),
                         eye_open_right=np.full(len(tt), 1.1), mouth_open=0.2 + 0.1 * np.sin(3 * tt), blink=blink,
                         expected_error=np.full(len(tt), 0.03 * k)))
    return {f: np.concatenate([r[f] for r in rows]) for f in rows[0]}, t


def test_report_png_has_one_panel_per_track_blinks_from_the_flags_and_shaded_gaps(tmp_path):
    rows, frame_times = _rows()
    tracks = series_by_track(rows)
    assert sorted(tracks) == [1, 2] and len(tracks[2].time) == 80
    out = write_report(tmp_path / "report.png", tracks, frame_times=frame_times)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 1200
    one = render_report(series_by_track(_rows(two_tracks=False)[0]))
    assert img.shape[0] > one.shape[0] * 1.7  # a second panel below the first
    assert (img < 250).mean() > 0.02  # not blank
    h = (img.shape[0] - 40) // 2
    top, bottom = img[40:40 + h], img[40 + h:40 + 2 * h]
    assert np.abs(top.astype(int) - bottom.astype(int)).mean() > 1.0  # the panels show different tracks
    red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
    assert red[40:40 + h].sum() > 100 and red[40 + h:].sum() < red[40:40 + h].sum() / 5  # blink on track 1 only
    grey = np.all(np.abs(bottom.astype(int) - 215) < 3, axis=2)
    assert grey.sum() > 5 * grey.shape[0] // 10  # the missing frames of track 2 are shaded
    assert np.all(np.abs(top.astype(int) - 215) < 3, axis=2).sum() < grey.sum() / 5


def test_per_track_mappings_events_and_missing_columns():
    t = np.arange(50) / 25.0
    # A mapping per track, a column left out (mouth_open), rows out of time order: all accepted.
    order = np.r_[25:50, 0:25]
    track = {"time": t[order], "yaw": (20 * np.sin(t))[order], "eye_open_left": np.ones(50),
             "eye_open_right": np.ones(50)}
    s = track_series(track)
    assert np.all(np.diff(s.time) > 0) and np.isnan(s.mouth_open).all() and not s.blink.any()
    plain = render_report({3: track})
    marked = render_report({3: track}, blinks=[Blink(3, 0.8, 1.0, 20, 25, 0.2), Blink(9, 0.1, 0.3, 2, 7, 0.1)])
    red = lambda im: ((im[..., 2] > 200) & (im[..., 1] < 60) & (im[..., 0] < 60)).sum()  # noqa: E731
    assert red(marked) > red(plain) + 50  # track 3's event is marked, track 9's (no panel) is not drawn


def test_report_bad_input_and_unwritable_path(tmp_path):
    rows, _ = _rows()
    with pytest.raises(StarTrackError, match="column yaw"):
        render_report({1: {**{k: v[:100] for k, v in rows.items()}, "yaw": rows["yaw"][:99]}})
    with pytest.raises(StarTrackError, match="no face"):
        render_report({})
    with pytest.raises(StarTrackError, match="track_id"):
        series_by_track({"time": rows["time"]})
    old = {"time": rows["time"], "track_id": rows["track_id"], "expected_error": rows["expected_error"]}
    with pytest.raises(StarTrackError, match="older version"):  # a file with no analysis columns
        render_report(series_by_track(old))
    with pytest.raises(OutputError):
        write_report(tmp_path / "missing" / "r.png", series_by_track(rows))
