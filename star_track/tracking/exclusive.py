"""A claim for one caller at a time that raises instead of waiting: a :class:`~star_track.tracking.tracker.Tracker`
is not thread-safe, and a second thread inside it would mix two streams' state silently."""
from __future__ import annotations

import threading

from ..errors import ConcurrentUseError


class Exclusive:
    """``with claim:`` runs the block, or raises :class:`ConcurrentUseError` (``message``) at once while another
    thread is inside a block of the same claim. The lock is never waited on."""

    def __init__(self, message: str):
        self._lock = threading.Lock()
        self._message = message

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise ConcurrentUseError(self._message)

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
