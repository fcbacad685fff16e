"""SIGINT and SIGTERM: what the SDK loop, the outputs and the command line do with them.

* :class:`StopFlag` - records a signal so that :func:`~star_track.run.loop.process_video` stops after a whole
  frame and the caller can still close its outputs;
* :class:`deferred_signals` - holds signals while an output is finished (an encoder flush, a rename);
* :func:`install_handlers` / :class:`Interrupted` - the console script's handlers for start-up and model loading.

This module imports nothing heavy (the console script installs its handlers before any other import).
"""
from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

SIGNAL_EXIT: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside a command's own handling (start-up, imports, model loading).

    A BaseException but not a KeyboardInterrupt: typer turns a KeyboardInterrupt into a silent exit 130 (even
    for SIGTERM), while this one reaches :func:`star_track.cli.main`, which prints one line with the signal's
    own exit code.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT.get(self.signum, 130)

    @property
    def word(self) -> str:
        return "terminated" if self.signum == signal.SIGTERM else "interrupted"


def _raise_interrupted(signum, _frame) -> None:
    raise Interrupted(signum)


class deferred_signals:
    """``with deferred_signals():`` holds SIGINT/SIGTERM until the block ends, then delivers them to the handler
    that was in place (a KeyboardInterrupt, :class:`Interrupted`, a :class:`StopFlag`
    that records it, or the default action).

    The outputs' ``close()`` run in such a block, so that a second Ctrl-C or a SIGTERM cannot cut a video's
    finishing (encoder flush, index, the move into place) short and leave hidden partial or claim files behind.
    Outside the main thread (where Python cannot change handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._old: dict[int, object] = {}

    def _hold(self, signum: int, _frame: object) -> None:
        self.caught.append(signum)

    def __enter__(self) -> "deferred_signals":
        for s in SIGNAL_EXIT:
            try:
                old = signal.getsignal(s)
                if old is not None and old is not signal.SIG_IGN:
                    self._old[s] = signal.signal(s, self._hold)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc: object) -> None:
        old, self._old = self._old, {}
        for s, handler in old.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        caught, self.caught = self.caught, []
        for s in caught:  # now the handler in place decides (the first one that raises ends the loop)
            signal.raise_signal(s)


def install_handlers() -> None:
    """Raise :class:`Interrupted` on SIGINT/SIGTERM; a signal the parent ignores (``nohup``, a shell's
    background job) stays ignored."""
    for s in SIGNAL_EXIT:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _raise_interrupted)


def interrupted_by(exc: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` that ``exc`` is or wraps (class creation wraps it: "Error calling __set_name__")."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, Interrupted):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class StopFlag:
    """Records SIGINT/SIGTERM instead of raising, so the current frame finishes and files get closed.

    Used as a context manager around the loop; outside the main thread (where Python cannot install signal
    handlers) it records nothing. A second Ctrl-C while the current frame is tracked raises KeyboardInterrupt
    (a hung input can still be left), but never while the frame's outputs are written (:meth:`deferring`).

    ``hold=True`` keeps the handlers installed, recording only, after the loop ends, until the caller's
    ``with stop.deferring():`` block around the closing of its outputs ends: then no signal can arrive between
    the loop and the closing, or during the closing, and interrupt a video being finished (``star-track video``
    does this). The signal is in :attr:`signum` afterwards.
    """

    def __init__(self, hold: bool = False) -> None:
        self.signum: int | None = None
        self.hold = hold
        self._old: dict[int, Any] = {}
        self._deferring = False
        self._held = False

    def _install(self) -> bool:
        """Install the handlers unless they are; True when this call installed them."""
        if self._old:
            return False
        for s in SIGNAL_EXIT:
            try:
                if signal.getsignal(s) is not signal.SIG_IGN:  # ignored by the parent: stays ignored
                    self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: keep default behaviour
                pass
        return bool(self._old)

    def _restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()
        self._held = False

    def __enter__(self) -> "StopFlag":
        self._install()
        self._deferring = self._held = False
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT and not self._deferring:
            raise KeyboardInterrupt  # second Ctrl-C: give up waiting
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        if self.hold and self._old:
            self._deferring = self._held = True  # recording only, until deferring() ends
            return
        self._restore()

    @contextlib.contextmanager
    def deferring(self) -> Iterator["StopFlag"]:
        """Record SIGINT/SIGTERM (never raise) until the block ends; wrap the writing or closing of outputs in
        it. Installs the handlers for the block when they are not installed (e.g. the loop never started)."""
        installed = self._install()
        was, self._deferring = self._deferring, True
        try:
            yield self
        finally:
            self._deferring = was
            if installed or self._held:
                self._restore()

    @property
    def exit_code(self) -> int:
        """130 after SIGINT, 143 after SIGTERM, 0 when no signal arrived."""
        return SIGNAL_EXIT.get(self.signum, 0) if self.signum is not None else 0
