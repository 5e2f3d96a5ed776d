"""The live view of a running search: counts, Pareto front size, time, recent events.

On a terminal it is a rich ``Live`` panel refreshed from the Tune loop; elsewhere (CI, logs,
``nohup``) each event is printed as one plain line instead, so logs stay readable.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from dimsearch.search.study import front_trials, storage_call

__all__ = ["LiveView"]

_STYLE = {"start": "cyan", "complete": "green", "pruned": "yellow", "failed": "red", "warn": "red"}


class LiveView:
    """Shows progress of one `run` session; events come from the bridge."""

    def __init__(
        self, console: Console, study: optuna.Study, total: int, timeout_min: float | None
    ) -> None:
        self.console = console
        self.study = study
        self.total = total
        self.timeout_min = timeout_min
        self.start = time.time()
        self.events: deque[str] = deque(maxlen=8)
        self.recorder: Any = None
        self._live: Live | None = None
        self._last = 0.0
        self._front = 0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, auto_refresh=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.__exit__(*exc)
            self._live = None

    def event(self, kind: str, message: str) -> None:
        """Record one event (kinds: start, complete, pruned, failed, warn)."""
        style = _STYLE.get(kind, "white")
        line = f"[{style}]{time.strftime('%H:%M:%S')} {escape(message)}[/]"
        self.events.append(line)
        if kind == "complete":
            self._front = len(storage_call(self.study, front_trials, self.study))
        if self._live is None:
            self.console.print(line)
        else:
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Redraw at most twice a second (called on every Tune loop step)."""
        now = time.time()
        if self._live is not None and (force or now - self._last > 0.5):
            self._last = now
            self._live.update(self._render(), refresh=True)

    def _render(self) -> Panel:
        counts = self.recorder.counts if self.recorder else {}
        running = len(self.recorder.open_trials) if self.recorder else 0
        elapsed = time.time() - self.start
        table = Table.grid(padding=(0, 3))
        for _ in range(6):
            table.add_column()
        done = sum(counts.values())
        budget = f"{done}/{self.total} trials"
        if self.timeout_min:
            left = max(0.0, self.timeout_min * 60 - elapsed)
            budget += f", {left / 60:.1f} min left"
        table.add_row(
            f"complete [green]{counts.get('complete', 0)}[/]",
            f"running [cyan]{running}[/]",
            f"pruned [yellow]{counts.get('pruned', 0)}[/]",
            f"failed [red]{counts.get('failed', 0)}[/]",
            f"Pareto front [bold]{self._front}[/]",
            f"elapsed {elapsed / 60:.1f} min, {budget}",
        )
        n_all = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        title = f"dimsearch run: {self.study.study_name} ({n_all} complete in the study)"
        return Panel(Group(table, *self.events), title=title, border_style="blue")
