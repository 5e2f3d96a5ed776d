"""What every command shares: the one console and the error-to-exit-code rule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from dimsearch.errors import DimsearchError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `DimsearchError` into a red one-line message and exit status 2."""
    try:
        yield
    except DimsearchError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
