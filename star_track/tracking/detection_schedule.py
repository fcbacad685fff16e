"""When the video tracker's face detector runs, and on which thread.

- **At once**, on the caller's thread, on the first frame and whenever no face runs or a track's confidence is
  below ``redetect_below``: the tracker needs those boxes for this very frame.
- **Every** ``every`` frames while fewer than ``max_faces`` faces run, to find new ones. With ``background=True``
  (and ``every`` > :data:`COLLECT_AFTER`) this call runs on a worker thread while the tracker goes on with the
  known faces; its result is taken :data:`COLLECT_AFTER` frames later, waiting for it if needed, and matched to
  the tracks there. A face that walks in therefore starts that many frames later. Because the result is always
  taken at that frame, what the tracker returns never depends on thread timing.

Why: BlazeFace costs 2-5 ms a call (full range, whatever the frame size), about twice the landmark engine's time
for one face, so one frame's work does not hide it. On two cores the periodic call no longer adds to the frame
time (``python -m benchmarks.speed --vs-mediapipe``, the ``detect`` stage).
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, Sequence

import numpy as np

from ..detection.blazeface import Detection, FaceDetector
from .landmarker import StageTimer


COLLECT_AFTER = 2
"""Frames between a background detection's start and the use of its result."""


class _Scored(Protocol):
    score: float


class DetectionSchedule:
    """The video tracker's detector calls (see the module docs).

    Args:
        detector: the tracker's video-mode detector (used by one thread at a time: a background call is always
            collected before the next call starts).
        every: frames between the periodic calls.
        background: run the periodic calls on a worker thread.
        timed: the tracker's stage timer; each detection reports its caller-thread time once as ``detect``.
    """

    def __init__(self, detector: FaceDetector, every: int, background: bool, timed: StageTimer):
        self.detector, self.every, self.background, self._timed = detector, every, background, timed
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._pending_index = 0
        self._prepare_s = 0.0
        self._last = -10**9

    def detections(self, frame: np.ndarray, timestamp_ms: int, index: int, tracks: Sequence[_Scored],
                   max_faces: int, redetect_below: float) -> list[Detection] | None:
        """Detections for the tracker to match to ``tracks`` at frame ``index`` (None: none this frame):
        this frame's when it needs them now, else a background call's when its frame to be used has come."""
        if not tracks or any(tr.score < redetect_below for tr in tracks):
            self.reset()  # a pending result is superseded by this frame's
            self._last = index
            return self._timed("detect", self.detector.detect, frame, timestamp_ms)
        earlier = self._collect() if index - self._pending_index >= COLLECT_AFTER else None
        if len(tracks) < max_faces and index - self._last >= self.every:
            self._last = index
            if not self.background or self.every <= COLLECT_AFTER:
                return self._timed("detect", self.detector.detect, frame, timestamp_ms)
            t0 = time.perf_counter()
            prepared = self.detector.prepare(frame)  # the detector's own copy: the caller may reuse the frame
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="star-track-detect")
            self._pending = self._pool.submit(self.detector.run, prepared, timestamp_ms)
            self._pending_index, self._prepare_s = index, time.perf_counter() - t0
        return earlier

    def _collect(self) -> list[Detection] | None:
        """The background call's detections (waiting for them), or None when none is pending."""
        if self._pending is None:
            return None
        pending, self._pending = self._pending, None
        t0 = time.perf_counter()
        try:
            return pending.result()
        finally:
            self._timed.report("detect", self._prepare_s + time.perf_counter() - t0)

    def reset(self) -> None:
        """Drop a pending call's result (after it finished: the detector is not shared between threads) and
        start the periodic count again."""
        if self._pending is not None:
            self._pending.exception()  # waits; its result or error belongs to the forgotten stream
            self._pending = None
        self._last = -10**9

    def close(self) -> None:
        """Finish a pending call and stop the worker thread (the detector itself stays open)."""
        self.reset()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
