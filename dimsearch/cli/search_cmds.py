"""Commands of the search: `run`, `show`, and `schema` (the space file format)."""

from __future__ import annotations

from pathlib import Path

import typer

from dimsearch._values import json_text
from dimsearch.cli._common import app, console, print_table, user_errors


@app.command()
def run(
    space: Path = typer.Argument(..., help="Search-space YAML, e.g. spaces/pit.yaml."),
    storage: str = typer.Option(
        None, help="Optuna storage: SQLAlchemy URL or journal file (default studies/<name>.db)."
    ),
    address: str = typer.Option(None, help="Join this Ray cluster (default: a local Ray)."),
    trials: int = typer.Option(None, min=0, help="Sampled trials this session (default: YAML)."),
) -> None:
    """Search SPACE: seeds first, then sampled trials; appended to (and resumed from) its study."""
    from dimsearch.search import load_space
    from dimsearch.search.runner import run as run_search
    from dimsearch.search.show import study_table
    from dimsearch.search.study import open_study, study_rows

    with user_errors():
        spc = load_space(space)
        summary = run_search(spc, storage=storage, address=address, trials=trials, console=console)
        study = open_study(spc.name, storage)
    rows = study_rows(study)
    print_table(study_table(study, rows, all_trials=False))
    c = summary.counts
    console.print(
        f"this session: {c['complete']} complete, {c['pruned']} pruned"
        + (f" ({c['rejected']} before training)" if c["rejected"] else "")
        + f", {c['failed']} failed "
        f"in {summary.seconds / 60:.1f} min; study stored in {summary.storage}"
    )
    if summary.interrupted:
        console.print(
            f"[yellow]interrupted.[/] Everything finished so far is stored; resume with "
            f"`dimsearch run {space}`" + (f" --storage {storage}" if storage else "")
        )


@app.command()
def show(
    study: str = typer.Argument(..., help="Space name, studies/<name>.db, or the space YAML."),
    storage: str = typer.Option(None, help="Optuna storage URL (default studies/<name>.db)."),
    all_trials: bool = typer.Option(False, "--all", help="Every trial, not only the front."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
    provenance: bool = typer.Option(
        False,
        "--provenance",
        help="Only what the study was recorded with: versions, git commit, data cache.",
    ),
) -> None:
    """Print the Pareto front of a study (seeds marked by name); with --all, every trial and
    what the study was recorded with."""
    from rich.markup import escape

    from dimsearch.search.gate import latency_drift
    from dimsearch.search.show import provenance_lines, study_table
    from dimsearch.search.study import (
        latency_pairs,
        open_study,
        state_counts,
        study_name_of,
        study_provenance,
        study_rows,
    )

    with user_errors():
        name, default_storage = study_name_of(study)
        st = open_study(name, storage or default_storage)
    if provenance:
        if as_json:
            console.print_json(json_text(study_provenance(st)))
        else:
            for line in provenance_lines(study_provenance(st)):
                console.print(escape(line), soft_wrap=True)
        return
    rows = study_rows(st, all_trials=all_trials)
    if as_json:  # inf/NaN read from the study print as null: the output stays JSON
        console.print_json(json_text(rows))
        return
    print_table(study_table(st, rows, all_trials=all_trials))
    counts = ", ".join(f"{v} {k}" for k, v in state_counts(st).items())
    console.print(f"{len(st.trials)} trials: {counts}")
    drift = latency_drift(latency_pairs(st), name)
    if drift:
        console.print(f"[yellow]note:[/] {escape(drift)}", soft_wrap=True)
    if all_trials:
        for line in provenance_lines(study_provenance(st)):
            console.print(escape(line), soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a space file (for editors: see docs/spaces.md)."""
    from dimsearch.search.schema import space_schema

    console.out(json_text(space_schema(), indent=2), highlight=False)
