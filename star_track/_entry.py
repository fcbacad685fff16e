"""The ``star-track`` console script: signal handlers first, then the (heavier) command line.

Everything imported before the handlers are installed is a window in which Ctrl-C is Python's traceback and
SIGTERM a silent death, so this module imports nothing but :mod:`signal` and :mod:`sys` before installing them.
"""
from __future__ import annotations

import signal
import sys

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
    that was in place (a KeyboardInterrupt, :class:`Interrupted`, a :class:`~star_track.pipeline.StopFlag`
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


def main() -> None:
    """Console-script entry point."""
    install_handlers()
    try:
        from .cli import main as cli_main
    except BaseException as e:  # noqa: BLE001 - only interrupts are handled here
        hit = interrupted_by(e)
        if hit is None:
            raise
        for s in SIGNAL_EXIT:
            signal.signal(s, signal.SIG_IGN)
        sys.stderr.write(f"star-track: {hit.word}\n")
        sys.exit(hit.exit_code)
    cli_main()


if __name__ == "__main__":
    main()
