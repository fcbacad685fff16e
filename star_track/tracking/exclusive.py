"""A claim for one caller at a time that raises instead of waiting: a :class:`~star_track.tracking.tracker.Tracker`
is not thread-safe, and a second thread inside it would mix two streams' state silently."""
from __future__ import annotations

import threading

from ..errors import ConcurrentUseError, TrackerClosedError


class Exclusive:
    """``with claim:`` runs the block, or raises :class:`ConcurrentUseError` (``message``) at once while another
    thread is inside a block of the same claim (the lock is never waited on), or :class:`TrackerClosedError` once
    the claim is closed."""

    def __init__(self, message: str):
        self._lock = threading.Lock()
        self._message = message
        self._closed: str | None = None

    def close(self, message: str) -> None:
        """From now on every block raises :class:`TrackerClosedError` (``message``)."""
        self._closed = message

    def __enter__(self) -> None:
        if self._closed is not None:
            raise TrackerClosedError(self._closed)
        if not self._lock.acquire(blocking=False):
            raise ConcurrentUseError(self._message)

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
