"""Print a study: its Pareto front (or every trial) as a rich table; the rows come from
`dimsearch.search.study` (`study_rows`), which owns what a study holds and how it reads.

This reads the study and nothing else (no YAML, no Ray), so it works on a laptop with a
copy of ``studies/<name>.db`` while the search still runs on the cluster.
"""

from __future__ import annotations

from typing import Any

import optuna
from rich.markup import escape
from rich.table import Table

__all__ = ["accuracy_text", "provenance_lines", "study_table"]


def study_table(study: optuna.Study, rows: list[dict[str, Any]], *, all_trials: bool) -> Table:
    """A rich table of ``rows`` (from `study_rows`); with ``all_trials`` a ``*`` after the
    number marks the Pareto front, and the reasons follow in the table's caption. Seeds off
    the front follow it as ``reference`` rows. Text from the study (its name, seed labels,
    reasons) is escaped: a study is a shared file, and ``[/x]`` in it is not console markup.

    Where an architecture was trained more than once (``search.repeats``), its accuracy reads
    ``mean ± std (n)``, and ``~`` marks front neighbours whose intervals overlap: their order
    on the front is within the noise of training.

    Where trials carry a latency predicted before building (`dimsearch.search.gate`), a
    ``pred. ms`` column follows the measured ``ms``, so the two read side by side.
    """
    kind = "all trials" if all_trials else "Pareto front"
    front = [r for r in rows if not r.get("reference")]
    predicted = any(r.get("predicted_latency_ms") is not None for r in rows)
    table = Table(title=f"{escape(study.study_name)}: {kind} ({len(front)})")
    columns = ["#", "seed", "state", "top-1 %", "GFLOPs", "ms", "M params", "epochs"]
    if predicted:
        columns.insert(columns.index("ms") + 1, "pred. ms")
    for c in columns:
        table.add_column(c, justify="left" if c in ("seed", "state") else "right", no_wrap=True)
    reasons = []
    noisy = False
    for r in rows:
        mark = "*" if all_trials and r["pareto"] else ""
        cells = [
            f"{r['number']}{mark}",
            escape(r["label"] or ""),
            "reference" if r.get("reference") else r["state"].lower(),
            accuracy_text(r),
            _fmt(r["gflops"], "{:.3f}"),
            _fmt(r["latency_ms"], "{:.2f}"),
            _fmt(r["params"] and r["params"] / 1e6, "{:.2f}"),
            _fmt(r["epochs"], "{}"),
        ]
        if predicted:
            cells.insert(6, _fmt(r.get("predicted_latency_ms"), "{:.2f}"))
        table.add_row(*cells)
        if r.get("within_noise"):
            noisy = True
        if all_trials and r["reason"]:
            reasons.append(f"#{r['number']} {r['state'].lower()}: {escape(r['reason'])}")
    if noisy:
        reasons.insert(0, "~ mean ± std overlaps a front neighbour's: their order is noise")
    if len(front) < len(rows):
        reasons.insert(0, "reference: a seed off the front, listed to compare with")
    if reasons:
        table.caption = "\n".join(reasons)
        table.caption_justify = "left"
    return table


def accuracy_text(r: dict[str, Any]) -> str:
    """A row's accuracy as a reader sees it everywhere: ``71.20``, or ``71.20 ± 0.35 (2)`` for
    an architecture trained with several seeds, then `` ~`` when its interval overlaps a
    front neighbour's."""
    text = _fmt(r["accuracy"], "{:.2f}")
    if r.get("accuracy_std") is not None:
        text += f" ± {r['accuracy_std']:.2f} ({len(r['accuracy_runs'])})"
    return text + (" ~" if r.get("within_noise") else "")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def provenance_lines(provenance: dict[str, Any]) -> list[str]:
    """`study_provenance` for people: one line of versions and commit, one of the data cache."""
    lines = []
    versions = provenance.get("versions")
    if isinstance(versions, dict):
        libs = [f"{k} {v}" for k, v in versions.items() if not k.startswith("git_")]
        commit = versions.get("git_commit")
        if commit:
            libs.append(f"git {commit}" + (" (dirty)" if versions.get("git_dirty") else ""))
        lines.append("recorded with: " + ", ".join(libs))
    else:
        lines.append("recorded with: (no versions recorded)")
    cache = provenance.get("data_cache")
    if isinstance(cache, dict):
        lines.append(f"proxy data cache: {cache.get('key')} (checksum {cache.get('checksum')})")
    return lines
