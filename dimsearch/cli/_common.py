"""What every command shares: the apps it registers on, the one console and the
error-to-exit-code rule.

The apps live here, not in `dimsearch.cli`, so the command modules import them from a module
that does not import the commands back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from dimsearch.errors import DimsearchError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="dimsearch",
    help="Design-space explorer for hierarchical vision transformers (PiT, ResT and between).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Benchmarks: figures and ratios measured in one run.", no_args_is_help=True
)
data_app = typer.Typer(
    help="Proxy datasets: prepare caches ahead of a search.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `DimsearchError` into a red one-line message and exit status 2."""
    try:
        yield
    except DimsearchError as err:
        # the message is text, not markup: a rule such as [a-z0-9_-] must print as written
        err_console.print(f"[red]error:[/] {escape(str(err))}")
        raise typer.Exit(2) from None
