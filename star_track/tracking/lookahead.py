"""Frames waiting for their look-ahead: the :class:`~star_track.tracking.tracker.Tracker`'s ``lookahead`` queue.

With ``lookahead`` L > 0, each frame's faces wait until L more frames have been tracked; their landmarks are then
the face-level filter's revision of that frame with the frames after it
(:meth:`~star_track.smoothing.face_level.FaceLevelSmoother.revised`), everything else (raw landmarks,
covariances, score, face state) as :meth:`~star_track.tracking.tracker.Tracker.track` returned it. A face whose
filter has restarted since (a lost and re-found track, a long gap) keeps the landmarks it had.
"""
from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from .face import Face
from .tracks import Track

Waiting = list[tuple[Face, object, int]]
"""One frame: each face with its track's smoother and that smoother's update count at the frame."""


class LookaheadQueue:
    """The last ``frames`` frames' faces, handed out revised once ``frames`` more frames have been tracked."""

    def __init__(self, frames: int, select: list[int] | None = None):
        """``select``: the model points the faces report (a 98 -> 68 reduction), None: all of them."""
        self.frames = frames
        self.select = select
        self._waiting: deque[Waiting] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def clear(self) -> None:
        self._waiting.clear()

    def push(self, faces: list[Face], tracks: list[Track]) -> None:
        """A tracked frame's faces (``tracks``: the tracker's, which hold their smoothers). Without look-ahead only
        the newest frame is kept, as it is (a live caller that never asks for settled frames holds no history);
        with it, every frame waits until :meth:`ready` or :meth:`flush` hands it out."""
        if not self.frames:
            self._waiting.clear()
            self._waiting.append([(f, None, 0) for f in faces])
            return
        smoothers = {tr.track_id: tr.smoother for tr in tracks}
        self._waiting.append([(f, smoothers[f.track_id], getattr(smoothers[f.track_id], "updates", 0))
                              for f in faces])

    def ready(self) -> list[list[Face]]:
        """The frames whose look-ahead is complete, oldest first (removed from the queue)."""
        return [self._settle(self._waiting.popleft()) for _ in range(len(self._waiting) - self.frames)]

    def flush(self) -> list[list[Face]]:
        """Every frame still waiting, revised with the frames there are, oldest first (the queue is emptied)."""
        return [self._settle(self._waiting.popleft()) for _ in range(len(self._waiting))]

    def _settle(self, frame: Waiting) -> list[Face]:
        out = []
        for face, smoother, update in frame:
            revise = getattr(smoother, "revised", None)
            points = revise(update) if revise is not None and self.frames else None
            if points is not None:
                points = points if self.select is None else points[self.select]
                face = replace(face, landmarks=np.asarray(points, np.float32))
            out.append(face)
        return out
