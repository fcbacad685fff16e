"""Blink events per track from eye openness over time.

Each track keeps an adaptive baseline: the open-eye level, a slow average of the openness over frames that are
not in a blink (people's eyes, and a landmark model's view of them, differ, so no fixed threshold fits all).
Hysteresis on that baseline: a closure starts when the openness falls below ``close_ratio`` x baseline and ends
when it rises above ``open_ratio`` x baseline again. A closure counts as a blink when it lasts at least
``min_frames`` frames (one low frame between open ones is a landmark glitch, not a blink) and at most
``max_duration`` seconds (longer is eyes kept shut, reported as no blink). Frames with no face (NaN openness)
pause the detector; a gap longer than ``max_gap`` seconds ends any closure without a blink.

:class:`BlinkDetector` is the online form (one ``update`` per face per frame, the events come out when they
end); :func:`detect_blinks` runs it over whole arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from star_track.errors import StarTrackError


@dataclass(frozen=True)
class Blink:
    """One blink of one track."""

    track_id: int
    start: float
    """Time (s) of the first frame with the eyes closing (below the close threshold)."""
    end: float
    """Time (s) of the first frame open again (above the open threshold)."""
    start_frame: int
    """Index (into the caller's sequence for this track) of the first closed frame."""
    end_frame: int
    """Index of the first frame open again."""
    depth: float
    """Lowest openness during the blink, as a fraction of the baseline (0 = fully closed)."""


@dataclass
class _TrackState:
    baseline: float = math.nan
    count: int = 0
    closing: bool = False
    start_t: float = 0.0
    start_i: int = 0
    low_frames: int = 0
    min_ratio: float = 1.0
    last_t: float = math.nan
    index: int = 0
    shut: bool = False  # closed past max_duration: wait for open eyes before a new closure
    history: list[float] = field(default_factory=list)


class BlinkDetector:
    """Online per-track blink detection with hysteresis on an adaptive baseline."""

    def __init__(self, close_ratio: float = 0.8, open_ratio: float = 0.9, min_frames: int = 2,
                 max_duration: float = 1.0, baseline_seconds: float = 3.0, max_gap: float = 0.25,
                 warmup: int = 5):
        if not 0 < close_ratio < open_ratio <= 1:
            raise StarTrackError(f"need 0 < close_ratio < open_ratio <= 1, got {close_ratio}, {open_ratio}")
        self.close_ratio, self.open_ratio = close_ratio, open_ratio
        self.min_frames, self.max_duration = min_frames, max_duration
        self.baseline_seconds, self.max_gap, self.warmup = baseline_seconds, max_gap, warmup
        self._tracks: dict[int, _TrackState] = {}

    def drop(self, track_id: int) -> None:
        """Forget a track (a closure it was in is not reported; a face with its id later starts afresh)."""
        self._tracks.pop(track_id, None)

    def update(self, track_id: int, t: float, openness: float) -> tuple[bool, Blink | None]:
        """Feed one frame of one track: returns (eyes closed now, the blink that just ended or None).

        ``openness`` is :attr:`Openness.eyes` (NaN when the face is missing this frame).
        """
        st = self._tracks.setdefault(track_id, _TrackState())
        i = st.index
        st.index += 1
        if not math.isfinite(openness):
            return False, None
        done: Blink | None = None
        if math.isfinite(st.last_t) and t - st.last_t > self.max_gap:
            st.closing = False  # a long gap: whatever closure was going on is unknowable
        dt = (t - st.last_t) if math.isfinite(st.last_t) else 0.0
        st.last_t = t
        if st.count < self.warmup:
            # Start-up: the baseline is the median of the first frames (robust to starting mid-blink).
            st.history.append(openness)
            st.count += 1
            st.baseline = float(np.median(st.history))
            return False, None
        ratio = openness / st.baseline if st.baseline > 0 else 1.0
        if st.shut:
            st.shut = ratio < self.open_ratio
            return st.shut, None
        if not st.closing:
            if ratio < self.close_ratio:
                st.closing, st.start_t, st.start_i, st.low_frames, st.min_ratio = True, t, i, 1, ratio
            else:
                # Only open frames move the baseline (exponential average over ~baseline_seconds).
                a = min(1.0, dt / self.baseline_seconds) if dt > 0 else 0.0
                st.baseline += a * (openness - st.baseline)
        else:
            if ratio < self.open_ratio:
                st.low_frames += 1
                st.min_ratio = min(st.min_ratio, ratio)
                if t - st.start_t > self.max_duration:
                    st.closing, st.shut = False, True  # eyes kept shut: not a blink
            else:
                st.closing = False
                if st.low_frames >= self.min_frames and t - st.start_t <= self.max_duration + 1e-9:
                    done = Blink(track_id, st.start_t, t, st.start_i, i, st.min_ratio)
        return st.closing, done


def detect_blinks(times: np.ndarray, openness: np.ndarray, track_ids: np.ndarray | None = None,
                  **params: float) -> list[Blink]:
    """Blinks in whole arrays: ``times`` (s), ``openness`` (eyes, NaN = no face), ``track_ids`` (one track if
    None), one row per face per frame in time order. ``params`` go to :class:`BlinkDetector`.

    ``start_frame`` / ``end_frame`` of each blink index the rows of its own track.
    """
    t = np.asarray(times, dtype=np.float64)
    o = np.asarray(openness, dtype=np.float64)
    ids = np.zeros(len(t), dtype=np.int64) if track_ids is None else np.asarray(track_ids)
    if not (t.ndim == o.ndim == ids.ndim == 1 and len(t) == len(o) == len(ids)):
        raise StarTrackError(f"times, openness and track_ids must be equal-length 1-D arrays, got {t.shape}, "
                             f"{o.shape}, {ids.shape}")
    det = BlinkDetector(**params)  # type: ignore[arg-type]
    out = []
    for ti, oi, k in zip(t.tolist(), o.tolist(), ids.tolist()):
        _, b = det.update(int(k), ti, oi)
        if b is not None:
            out.append(b)
    return out
