"""Commands on a design-space sample: `sample` (record it), `sample-export`, `fidelity` and
`bench search`.

A sample is a study where every architecture trained the full budget (a random sampler, no
early stopping; e.g. benchmarks/pit_fmnist32.yaml). `sample-export` keeps it as a small
versioned table (docs/sample-format.md); `fidelity` reads a table or the study itself;
`bench search` replays search methods on it in simulated time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from dimsearch._values import json_text
from dimsearch.cli._common import app, bench_app, console, err_console, user_errors

if TYPE_CHECKING:
    from dimsearch.analysis.fidelity import FidelityReport
    from dimsearch.search.search_bench import Interval, SearchBench

SAMPLE_HELP = (
    "A sample table (.json or .json.gz), or a study: space name, studies/<name>.db, or the "
    "space YAML."
)


@app.command()
def sample(
    space: Path = typer.Argument(..., help="Search-space YAML, e.g. benchmarks/pit_fmnist32.yaml."),
    n: int = typer.Option(..., "--n", min=1, help="Architectures in the sample (seeds on top)."),
    storage: str = typer.Option(
        None, help="Optuna storage: SQLAlchemy URL or journal file (default studies/<name>.db)."
    ),
    address: str = typer.Option(None, help="Join this Ray cluster (default: a local Ray)."),
    repeats: int = typer.Option(
        1,
        min=1,
        max=10,
        help="Runs (training seeds) for the seeds and every 10th architecture: the noise.",
    ),
) -> None:
    """Record a uniform sample of SPACE: N random architectures (budgets applied) and the seeds,
    each trained the full budget; rerun the same command to resume it."""
    from dimsearch.search import load_space
    from dimsearch.search.runner import run_sample

    with user_errors():
        summary = run_sample(
            load_space(space), n, repeats=repeats, storage=storage, address=address, console=console
        )
    c = summary.counts
    console.print(
        f"this session: {c['complete']} complete, {c['failed']} failed in "
        f"{summary.seconds / 60:.1f} min; sample stored in {escape(summary.storage)}",
        soft_wrap=True,
    )
    if summary.interrupted:
        console.print(
            f"[yellow]interrupted.[/] Resume with `dimsearch sample {escape(str(space))} --n {n}"
            + (f" --repeats {repeats}" if repeats > 1 else "")
            + "`"
        )


@app.command("sample-export")
def sample_export(
    study: str = typer.Argument(..., help="Space name, studies/<name>.db, or the space YAML."),
    out: Path = typer.Option(..., "--out", "-o", help="Table file to write (.json or .json.gz)."),
    storage: str = typer.Option(None, help="Optuna storage URL (default studies/<name>.db)."),
) -> None:
    """Write a study's sample (COMPLETE trials with a full curve) as a compact table file."""
    from dimsearch.search.sample import SampleTable
    from dimsearch.search.study import open_study, study_name_of

    command = f"dimsearch sample-export {study} -o {out}" + (
        f" --storage {storage}" if storage else ""
    )
    with user_errors():
        name, default_storage = study_name_of(study)
        table = SampleTable.from_study(
            open_study(name, storage or default_storage), command=command
        )
        size = table.save(out)
    skipped = ", ".join(f"{v} {k}" for k, v in table.excluded.items())
    console.print(
        f"{escape(str(out))}: {len(table.records)} records of {len(table.groups())} "
        f"architectures, {table.epochs} epochs, {size / 1024:.1f} KiB"
        + (f" (left out: {escape(skipped)})" if skipped else ""),
        soft_wrap=True,
    )


@app.command()
def fidelity(
    sample: str = typer.Argument(..., help=SAMPLE_HELP),
    storage: str = typer.Option(None, help="Optuna storage URL of a study SAMPLE."),
    other: str = typer.Option(
        None,
        help="A second sample of the same architectures (another resolution or data size): "
        "compare the two final rankings. " + SAMPLE_HELP,
    ),
    other_storage: str = typer.Option(None, help="Optuna storage URL of a study OTHER."),
    tau: float = typer.Option(0.8, help="Kendall tau a rung must hold from there on."),
    top: float = typer.Option(0.1, min=0.0, max=1.0, help="Top share for the overlap."),
    boot: int = typer.Option(1000, min=1, help="Bootstrap resamples of the architectures."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """How well each epoch's ranking predicts the final one, and the seed noise of a sample."""
    from dimsearch.analysis.fidelity import fidelity as measure
    from dimsearch.search.sample import open_sample

    with user_errors():
        table = open_sample(sample, storage)
        second = open_sample(other, other_storage) if other else None
        rep = measure(table, other=second, threshold=tau, top=top, boot=boot, seed=seed)
    if as_json:
        console.print_json(json_text(rep.to_dict()))
        return
    _print_report(rep)


def _num(value: float | None, spec: str = "{:.3f}") -> str:
    return "-" if value is None else spec.format(value)


def _print_report(rep: FidelityReport) -> None:
    from rich.table import Table

    pct = f"{rep.top_share:.0%}"
    table = Table(title=f"{escape(rep.study)}: ranking at each epoch vs epoch {rep.epochs}")
    for col in ("epoch", "cost", "tau", "95% interval", f"top-{pct} overlap"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rep.rungs:
        table.add_row(
            str(r.epoch),
            f"{r.cost:.0%}",
            _num(r.tau),
            f"{_num(r.low)} .. {_num(r.high)}",
            f"{r.top_overlap:.0%}",
        )
    table.caption = (
        f"{rep.archs} architectures, {rep.records} runs. Kendall tau-b, percentile bootstrap over architectures ({rep.boot} resamples, "
        f"seed {rep.seed}); top {pct} = {rep.top_k} architectures; cost in {rep.cost_basis}"
    )
    console.print(table)

    def rung(e: int | None) -> str:
        if e is None:
            return "none"
        return f"epoch {e} ({rep.rungs[e - 1].cost:.0%} of the budget)"

    console.print(
        f"cheapest rung holding tau >= {rep.threshold:g}: {rung(rep.cheapest_by_low)} by the "
        f"interval's lower bound, {rung(rep.cheapest_by_tau)} by the point estimate"
    )
    n = rep.noise
    if n is None:
        console.print("seed noise: unknown (no architecture was trained with two seeds)")
    else:
        console.print(
            f"seed noise ({n.archs} architectures, {n.runs} runs): final accuracy spreads "
            f"{n.mean_spread:.2f} points on average (at most {n.max_spread:.2f}), pooled std "
            f"{n.pooled_std:.2f}; {n.within_noise:.0%} of the pairwise differences are under "
            f"{n.threshold:.2f} points (two seeds of one architecture, 95%)"
        )
    c = rep.cross
    if c is not None:
        console.print(
            f"vs {escape(c.other)} ({c.matched} architectures in both; {c.only_here} only here, "
            f"{c.only_there} only there): final rankings tau {_num(c.tau)} "
            f"({_num(c.low)} .. {_num(c.high)}), top-{pct} overlap {c.top_overlap:.0%}"
        )


# -- bench search -------------------------------------------------------------------------------

# the names of dimsearch.search.simulate.METHODS, spelled out so `--help` imports no Optuna
_METHODS_HELP = "random, tpe+asha, tpe+moasha, nsga2"


@bench_app.command("search")
def bench_search_cmd(
    sample: str = typer.Argument(..., help=SAMPLE_HELP),
    space: Path = typer.Option(
        None, help="Space YAML to sample from (default: the space stored in SAMPLE)."
    ),
    storage: str = typer.Option(None, help="Optuna storage URL of a study SAMPLE."),
    reps: int = typer.Option(20, min=1, help="Replications per method (seeds SEED..SEED+N-1)."),
    workers: int = typer.Option(
        None, min=1, help="Simulated workers (default: the space's search.max_concurrent)."
    ),
    budget_frac: float = typer.Option(
        1.0, help="Compute per replication, as a share of what recording the sample cost."
    ),
    methods: list[str] = typer.Option(
        None, "--methods", help=f"Methods to replay, repeated or comma-separated: {_METHODS_HELP}."
    ),
    seed: int = typer.Option(0, help="Seed of the first replication."),
    neighbours: int = typer.Option(
        1, min=1, help="Recorded runs a surrogate proposal is made from (inverse-distance mean)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Replay search methods on a recorded sample in simulated time: does the search beat
    random search?"""
    from dimsearch.search import load_space
    from dimsearch.search.sample import open_sample
    from dimsearch.search.search_bench import bench_search
    from dimsearch.search.simulate import METHODS

    names = [n.strip() for m in methods or [] for n in m.split(",") if n.strip()]

    def progress(method: str, n: int, seconds: float) -> None:
        err_console.print(f"{method}: {n} replays in {seconds:.1f} s")

    with user_errors():
        table = open_sample(sample, storage)
        res = bench_search(
            table,
            load_space(space) if space else None,
            methods=names or tuple(METHODS),
            reps=reps,
            workers=workers,
            budget_frac=budget_frac,
            seed=seed,
            neighbours=neighbours,
            progress=None if as_json else progress,
        )
    if as_json:
        console.print_json(json_text(res.to_dict()))
        return
    _print_search_bench(res)


def _print_search_bench(res: SearchBench) -> None:
    from rich.table import Table

    def share(x: float) -> str:
        return f"{x:.0%}" if math.isfinite(x) else "never"

    def cell(i: Interval, fmt: Callable[[float], str]) -> str:
        median = "not reached" if fmt is share and not math.isfinite(i.median) else fmt(i.median)
        return f"{median}\n[dim]{fmt(i.low)}..{fmt(i.high)}[/]"

    hv = Table(title=f"{escape(res.sample)}: hypervolume at a share of the compute budget")
    hv.add_column("method", no_wrap=True)
    for f in res.fractions:
        hv.add_column(f"{f:.0%}", justify="right", no_wrap=True)
    for m in res.methods:
        hv.add_row(m.method.name, *(cell(i, lambda v: f"{v:.4g}") for i in m.hypervolume))
    hv.caption = (
        f"median over {res.reps} replications, 95% interval below; objectives "
        f"{', '.join(res.objectives)}, reference point "
        f"{', '.join(f'{v:.4g}' for v in res.reference)} (fixed for the table)"
    )
    console.print(hv)

    trials = Table(title="trials per replication (median); compute to reach random search")
    for col in ("method", "complete", "stopped", "rejected", "exact", "to random's HV"):
        trials.add_column(col, justify="right", no_wrap=True)
    for m in res.methods:
        reach = (
            "-" if m.reach is None else cell(m.reach, share) + f" [dim]({m.reached}/{res.reps})[/]"
        )
        trials.add_row(
            m.method.name,
            f"{m.completed:g}",
            f"{m.stopped:g}",
            f"{m.rejected:g}",
            f"{m.exact_share:.0%}",
            reach,
        )
    trials.caption = (
        "exact: trained proposals that are architectures of the sample (the rest: nearest "
        "recorded neighbour); to random's HV: compute share of the budget to reach random "
        "search's final median hypervolume, 95% interval, replications that reached it"
    )
    console.print(trials)

    if res.random_final is not None:
        console.print(f"random search's final median hypervolume: {res.random_final:.4g}")
    for t in res.targets:
        console.print(f"target ({t.name}) {t.text}: {t.measured} -> [bold]{t.word}[/]")
    for note in res.notes:
        console.print(f"note: {note}")
    for name, why in res.left_out.items():
        console.print(f"objective left out: {name} ({why})")
    console.print(
        f"{res.archs} architectures, {res.records} runs of {res.epochs} epochs; budget "
        f"{res.budget:,.0f} worker-seconds per replication ({res.budget_frac:g} x recording "
        f"the sample, {res.timing}); {res.workers} workers; {res.reps} replications per "
        f"method, seeds {res.seed}..{res.seed + res.reps - 1}; surrogate: "
        f"{res.neighbours} nearest neighbour(s), {res.time_model}; ASHA/MOASHA {res.rungs}"
    )
    console.print(f"wall time: {res.wall_seconds:.1f} s")
