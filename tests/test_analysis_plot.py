"""Run report PNG (issue 28): written with OpenCV, read back and checked."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from star_track.analysis.blinks import Blink
from star_track.analysis.plot import RunSeries, render_report, write_report
from star_track.errors import OutputError, StarTrackError


def _series(two_tracks=True):
    t = np.arange(100) / 25.0
    rows = []
    for k in (1, 2) if two_tracks else (1,):
        keep = np.ones(100, bool)
        if k == 2:
            keep[30:50] = False  # track 2 has no face for 20 frames
        tt = t[keep]
        s = 1.0 if k == 1 else -1.0
        rows.append(dict(time=tt, track_id=np.full(len(tt), k), yaw=s * 40 * np.sin(tt), pitch=10 * np.cos(tt),
                         roll=np.full(len(tt), 5.0 * k), left_eye=np.full(len(tt), 1.2),
                         right_eye=np.full(len(tt), 1.1), mouth=0.2 + 0.1 * np.sin(3 * tt),
                         expected_error=np.full(len(tt), 0.03 * k)))
    return RunSeries(**{f: np.concatenate([r[f] for r in rows]) for f in rows[0]}), t


def test_report_png_is_written_and_has_one_distinct_panel_per_track(tmp_path):
    series, frame_times = _series()
    blinks = [Blink(1, 1.0, 1.2, 25, 30, 0.3)]
    out = write_report(tmp_path / "report.png", series, blinks, frame_times=frame_times)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 1200
    one, _ = _series(two_tracks=False)
    single = render_report(one)
    assert img.shape[0] > single.shape[0] * 1.7  # a second panel below the first
    assert (img < 250).mean() > 0.02  # not blank
    h = (img.shape[0] - 40) // 2
    top, bottom = img[40:40 + h], img[40 + h:40 + 2 * h]
    assert np.abs(top.astype(int) - bottom.astype(int)).mean() > 1.0  # the panels show different tracks
    red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
    assert red[40:40 + h].sum() > 100 and red[40 + h:].sum() < red[40:40 + h].sum() / 5  # blink on track 1 only
    grey = np.all(np.abs(bottom.astype(int) - 215) < 3, axis=2)
    assert grey.sum() > 5 * grey[:, :].shape[0] // 10  # the missing frames of track 2 are shaded
    assert np.all(np.abs(top.astype(int) - 215) < 3, axis=2).sum() < grey.sum() / 5


def test_report_bad_input_and_unwritable_path(tmp_path):
    series, _ = _series()
    with pytest.raises(StarTrackError, match="column yaw"):
        bad = RunSeries(**{**series.__dict__, "yaw": series.yaw[:-1]})
        render_report(bad)
    empty = RunSeries(*(np.zeros(0) for _ in range(9)))
    with pytest.raises(StarTrackError, match="no face"):
        render_report(empty)
    with pytest.raises(OutputError):
        write_report(tmp_path / "missing" / "r.png", series)
