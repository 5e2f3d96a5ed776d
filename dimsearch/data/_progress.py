"""A progress bar the builders can ask for without knowing whether anyone is watching."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_task"]


@contextmanager
def progress_task(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; a rich bar on the terminal when ``enabled``, a no-op otherwise.

    rich is imported only when a bar is shown, so library use (a search trial loading its
    cached data) pays nothing for it.
    """
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
