"""The one progress bar of star-track (a video's frames, a batch's videos): rich, on stderr, shown only on a
terminal."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int | None, label: str, columns: Sequence[str] = (), completed: int = 0,
                 **fields: Any) -> Iterator[Callable[..., None]]:
    """A progress bar titled ``label`` over ``total`` steps (None: unknown), ``completed`` already done, with
    elapsed time and ETA; yields ``advance(**fields)``, which counts one step and updates the fields.

    ``columns`` are extra columns between the count and the times, as rich format strings over the fields
    (``"{task.fields[fps]:>6.1f} fps"``); ``fields`` are their starting values. ``enabled=False`` shows nothing
    (``advance`` does nothing).
    """
    if not enabled:
        yield lambda **values: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = Console(stderr=True)
    shown = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *map(TextColumn, columns),
             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*shown, console=console, transient=False, disable=not console.is_terminal) as prog:
        task = prog.add_task(label, total=total, completed=completed, **fields)
        yield lambda **values: prog.update(task, advance=1, **values)
