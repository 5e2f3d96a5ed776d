"""What every command shares: the apps it registers on, the one console and the
error-to-exit-code rule.

The apps live here, not in `dimsearch.cli`, so the command modules import them from a module
that does not import the commands back.

Every refused input ends the same way: one line ``error: ...`` on stderr and exit status 2.
A `DimsearchError` raised inside `user_errors` and a command-line usage error (a bad option
value, a number outside its bounds, a missing argument) both print through `print_error`, which
never reads the message as console markup: file names and study names are user text, and
``[/x]`` in one of them must print as written, not raise rich's MarkupError.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer._click import exceptions as click_errors  # typer's own click, vendored in 0.29
from typer.core import TyperGroup

from dimsearch.errors import DimsearchError

# Bounds of the numeric options: more than any real use needs, so an absurd value is a
# one-line usage error (exit 2) rather than terabytes allocated or hours of arithmetic.
MAX_IMG_SIZE = 4096  # pixels per side
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_REPEATS = 10_000  # timed passes, rounds, warm-up steps
MAX_DRAWS = 1_000_000  # architectures drawn, steps run
MAX_THREADS = 1024
MAX_BINS = 10_000

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_table(table: Any) -> None:
    """``table`` on the console: fitted to a terminal's width, and at its own full width
    elsewhere (a log, a pipe, ``nohup``), where rich would otherwise squeeze it into 80
    columns and cut trial numbers and ``mean ± std`` figures down to an ellipsis."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.measure(table, options=console.options.update_width(10_000)).maximum
    # print(width=) can only narrow, so a console of that width, on the same stream
    Console(highlight=False, width=max(console.width, wide)).print(table)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, on one line: the message is never parsed as markup
    (it quotes user text) and never wrapped (its line breaks become spaces)."""
    line = " ".join(str(message).split())
    err_console.print(Text.assemble(("error:", "red"), " ", line), soft_wrap=True)


class _OneLineErrors(TyperGroup):
    """The command group whose usage errors (bad option values, out-of-range numbers, missing
    arguments) read as one ``error:`` line with exit status 2, like every other refused input,
    rather than click's usage block and rich's framed panel."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as err:  # typer printed the help making it
            sys.exit(err.exit_code)
        except click_errors.ClickException as err:
            hint = f" (see '{err.ctx.command_path} --help')" if getattr(err, "ctx", None) else ""
            print_error(err.format_message() + hint)
            sys.exit(err.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
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
        print_error(str(err))
        raise typer.Exit(2) from None
