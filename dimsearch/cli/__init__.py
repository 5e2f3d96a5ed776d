"""The `dimsearch` command line: thin commands that parse, call one library function, print.

Each command group lives in its own module and registers itself on `app` (or `bench_app`,
`data_app`). Heavy libraries (torch, ray) are imported inside the commands so ``--help`` is
instant. Only here do `DimsearchError`s become exit status 2.
"""

from __future__ import annotations

import typer

from dimsearch.cli._common import console

__all__ = ["app", "bench_app", "console", "data_app", "main"]

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

# command modules register themselves on the apps above
from dimsearch.cli import (  # noqa: E402,F401
    arch_cmds,
    data_cmds,
    export_cmds,
    inspect_cmds,
    latency_cmds,
    search_cmds,
    train_cmds,
)


def main() -> None:
    """Console-script entry point."""
    app()
