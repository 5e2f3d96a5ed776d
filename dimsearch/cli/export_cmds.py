"""The `export` command: trials of a study as standalone PyTorch files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dimsearch.cli._common import app, console, user_errors


@app.command("export")
def export_cmd(
    study: str = typer.Argument(..., help="Space name, studies/<name>.db, or the space YAML."),
    storage: str = typer.Option(None, help="Optuna storage URL (default studies/<name>.db)."),
    trial: int = typer.Option(None, "--trial", min=0, help="Export this trial number."),
    pick: str = typer.Option(
        None,
        "--pick",
        help="Choose one Pareto-front trial: 'accuracy' (most accurate within the --max-* "
        "limits) or 'knee' (the accuracy/GFLOPs knee).",
    ),
    pareto: bool = typer.Option(False, "--pareto", help="Export every Pareto-front trial."),
    max_gflops: float = typer.Option(None, "--max-gflops", help="Limit for --pick/--pareto."),
    max_latency_ms: float = typer.Option(
        None, "--max-latency-ms", help="Limit for --pick/--pareto (the recorded latency)."
    ),
    max_params: float = typer.Option(
        None, "--max-params", help="Limit for --pick/--pareto, in millions of parameters."
    ),
    out: Path = typer.Option(None, "-o", "--out", help="Output folder (default exports/<study>/)."),
    weights: bool = typer.Option(
        False, "--weights", help="Also write each trial's proxy-trained weights as <name>.pt."
    ),
) -> None:
    """Write trials of STUDY as standalone PyTorch files (torch only, architecture as code)."""
    from dimsearch.export import default_out_dir, export_trials, select_trials
    from dimsearch.search.budgets import Budgets
    from dimsearch.search.study import open_study, study_file, study_name_of

    with user_errors():
        name, default_storage = study_name_of(study)
        st = open_study(name, storage or default_storage)
        limits = Budgets(
            max_gflops=max_gflops, max_params_m=max_params, max_latency_ms=max_latency_ms
        )
        trials = select_trials(st, trial=trial, pick=pick, pareto=pareto, constraints=limits)
        file = study_file(storage or default_storage, name)
        near = [file.parent] if file else []
        files = export_trials(
            st, trials, out or default_out_dir(name), weights=weights, weights_dirs=near
        )
    table = Table(title=f"exported from {escape(name)} ({len(files)})")
    for col in ("file", "trial", "seed", "top-1 %", "GFLOPs", "latency ms", "params M"):
        table.add_column(col, justify="left" if col in ("file", "seed") else "right")
    for f in files:
        r = f.record
        acc = r.objectives.get("accuracy")
        label = f.path.name + (f" + {f.weights.name}" if f.weights else "")
        table.add_row(
            escape(label),
            str(r.number),
            escape(r.seed or ""),
            "-" if acc is None else f"{acc:.2f}",
            "-" if r.gflops is None else f"{r.gflops:.3f}",
            "-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
            "-" if r.params is None else f"{r.params / 1e6:.2f}",
        )
    console.print(table)
    folder = files[0].path.parent  # select_trials raises rather than selecting nothing
    console.print(f"wrote {len(files)} file(s) to {escape(str(folder))}", soft_wrap=True)
