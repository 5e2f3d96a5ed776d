"""The `dimsearch` command line: thin commands that parse, call one library function, print.

Each command group lives in its own module and registers itself on `app` (or `bench_app`,
`data_app`), made in `_common` so no command module imports this package back. Heavy libraries
(torch, ray) are imported inside the commands so ``--help`` is instant. Only here do
`DimsearchError`s become exit status 2.
"""

from __future__ import annotations

from dimsearch.cli import (  # noqa: F401  (each registers its commands on the apps)
    arch_cmds,
    data_cmds,
    export_cmds,
    inspect_cmds,
    latency_cmds,
    sample_cmds,
    search_cmds,
    train_cmds,
)
from dimsearch.cli._common import app, bench_app, console, data_app

__all__ = ["app", "bench_app", "console", "data_app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
