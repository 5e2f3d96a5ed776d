"""Read a study back: its Pareto front (or every trial) as rows, a table, or JSON.

This reads the study and nothing else (no YAML, no Ray), so it works on a laptop with a
copy of ``studies/<name>.db`` while the search still runs on the cluster.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from dimsearch import zoo
from dimsearch.search.study import Attr, curve_attr, number_attr, pareto_front

__all__ = ["front_trials", "study_table", "trial_row"]


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials on the Pareto front of the study's objectives."""
    return pareto_front(study.get_trials(deepcopy=False), _directions(study))


def _directions(study: optuna.Study) -> list[str]:
    return [d.name.lower() for d in study.directions]


def objective_names(study: optuna.Study) -> list[str]:
    names = study.user_attrs.get(Attr.OBJECTIVES)
    if names and len(names) == len(study.directions):
        return list(names)
    return [f"objective{i}" for i in range(len(study.directions))]


def trial_row(t: FrozenTrial, names: list[str], on_front: bool) -> dict[str, Any]:
    """One trial as a flat, JSON-ready record; a stored figure that is not a number reads
    as ``None`` (see `number_attr`)."""
    ua = t.user_attrs
    node = ua.get(Attr.NODE)
    seed = ua.get(Attr.SEED)
    reason = ua.get(Attr.REASON)
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "seed": seed,
        "label": zoo.label(seed),
        "pareto": on_front,
        "params": number_attr(ua, Attr.PARAMS),
        "gflops": number_attr(ua, Attr.GFLOPS),
        "latency_ms": number_attr(ua, Attr.LATENCY_MS),
        "epochs": number_attr(ua, Attr.EPOCHS),
        "curve": curve_attr(ua),
        "reason": None if reason is None else str(reason),
        "node": node.get("hostname") if isinstance(node, dict) else None,
        "params_sampled": t.params,
    }
    if t.values is not None:
        row["values"] = dict(zip(names, t.values, strict=True))
        row["accuracy"] = row["values"].get("accuracy")
    else:
        row["accuracy"] = row["curve"][-1] if row["curve"] else None
    return row


def study_rows(study: optuna.Study, *, all_trials: bool = False) -> list[dict[str, Any]]:
    """The front (default) or every trial, seeds labelled, front first by accuracy."""
    names = objective_names(study)
    front = front_trials(study)
    on_front = {t.number for t in front}
    trials = study.get_trials(deepcopy=False) if all_trials else front
    rows = [trial_row(t, names, t.number in on_front) for t in trials]
    if not all_trials:
        rows.sort(key=lambda r: -(r["accuracy"] or 0.0))
    return rows


def study_table(study: optuna.Study, rows: list[dict[str, Any]], *, all_trials: bool) -> Table:
    """A rich table of ``rows`` (from `study_rows`); with ``all_trials`` a ``*`` after the
    number marks the Pareto front, and the reasons follow in the table's caption."""
    kind = "all trials" if all_trials else "Pareto front"
    table = Table(title=f"{study.study_name}: {kind} ({len(rows)})")
    for c in ("#", "seed", "state", "top-1 %", "GFLOPs", "ms", "M params", "epochs"):
        table.add_column(c, justify="left" if c in ("seed", "state") else "right", no_wrap=True)
    reasons = []
    for r in rows:
        mark = "*" if all_trials and r["pareto"] else ""
        table.add_row(
            f"{r['number']}{mark}",
            r["label"] or "",
            r["state"].lower(),
            _fmt(r["accuracy"], "{:.2f}"),
            _fmt(r["gflops"], "{:.3f}"),
            _fmt(r["latency_ms"], "{:.2f}"),
            _fmt(r["params"] and r["params"] / 1e6, "{:.2f}"),
            _fmt(r["epochs"], "{}"),
        )
        if all_trials and r["reason"]:
            reasons.append(f"#{r['number']} {r['state'].lower()}: {r['reason']}")
    if reasons:
        table.caption = "\n".join(reasons)
        table.caption_justify = "left"
    return table


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return {k: v for k, v in counts.items() if v}
