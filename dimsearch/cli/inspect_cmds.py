"""Commands that inspect a study and take results away: `dashboard`, `report`, `compare`, `edf`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from dimsearch._values import json_text
from dimsearch.cli._common import MAX_BINS, MAX_DRAWS, app, console, user_errors
from dimsearch.errors import DimsearchError

if TYPE_CHECKING:
    import optuna

    from dimsearch.analysis.edf import BandedEDFs
    from dimsearch.analysis.points import DesignPoints

STUDY_HELP = "Space name, studies/<name>.db, or the space YAML."
SOURCE_HELP = (
    "A design-space sample table (.json, .json.gz), or a study (space name, studies/<name>.db, "
    "space YAML): a sample study (`dimsearch sample`) gives its sample, any other its "
    "COMPLETE trials (not a uniform sample)."
)


def _open(study: str, storage: str | None) -> optuna.Study:
    from dimsearch.search.study import open_study, study_name_of

    name, default_storage = study_name_of(study)
    return open_study(name, storage or default_storage)


def _points(target: str, storage: str | None) -> tuple[str, DesignPoints]:
    """(name, design points) of a sample table file or a study (see `points_of`)."""
    from dimsearch.analysis.points import points_of
    from dimsearch.search.sample import SUFFIXES, SampleTable

    if target.endswith(SUFFIXES):
        table = SampleTable.load(target)
        return table.study, points_of(table)
    st = _open(target, storage)
    return st.study_name, points_of(st)


def _print_source(name: str, pts: DesignPoints) -> None:
    from dimsearch.analysis.points import source_note

    if pts.is_sample:
        console.print(f"{escape(name)}: {escape(source_note(pts))}", soft_wrap=True)
    else:
        console.print(
            f"[yellow]warning:[/] {escape(name)}: {escape(source_note(pts))}", soft_wrap=True
        )


def _print_bands(bands: BandedEDFs, title: str) -> None:
    from rich.table import Table

    from dimsearch.analysis.report import band_rows

    kind = {"plain": "plain", "gflops": "normalised by GFLOPs", "params": "normalised by params"}
    table = Table(title=f"{escape(title)}: error EDF, {kind[bands.weighting]}")
    if bands.groups:
        header, rows = band_rows(bands)
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        table.caption = (
            f"\\[lo,hi]: {bands.level:.0%} percentile bootstrap over architectures "
            f"({bands.n_boot} resamples, seed {bands.seed}); % ≤ e: share of models with "
            "error ≤ e %"
        )
        console.print(table)
    if bands.dropped:
        console.print(
            "outside the common complexity support (weight 0): "
            + ", ".join(f"{k}: {v}" for k, v in bands.dropped.items())
        )
    console.print(f"verdict: {escape(bands.verdict())}", soft_wrap=True)


def _floats_ok(values: list[float] | None, what: str) -> list[float] | None:
    import math

    if values and not all(math.isfinite(v) for v in values):
        raise DimsearchError(f"{what} must be finite numbers, got {values}")
    return values


def _artifact_dir(storage_url: str | None, name: str) -> Path:
    """``studies/pit.db`` -> ``studies/pit.artifacts``: the files live beside the study."""
    from dimsearch.search.study import STUDIES_DIR, study_file

    file = study_file(storage_url, name)  # None for a server or journal storage
    return file.with_suffix(".artifacts") if file else STUDIES_DIR / f"{name}.artifacts"


def _floats(text: str | None, what: str) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise DimsearchError(
            f"{what} must be comma-separated numbers, e.g. 0,3,50; got {text!r}"
        ) from None
    return _floats_ok(values, what)


# The EDF options report, compare and edf share: one spelling, one help text, one bound.
BINS_OPTION = typer.Option(
    None, min=1, max=MAX_BINS, help="Complexity bins (GFLOPs or params) of the normalisation."
)
BOOT_OPTION = typer.Option(
    1000, min=1, max=MAX_DRAWS, help="Bootstrap resamples (over architectures) of the EDF bands."
)
SEED_OPTION = typer.Option(0, help="Seed of the bootstrap.")
THRESHOLD_OPTION = typer.Option(
    None,
    help="Error threshold (%) for the shares; repeat for several (default: pooled "
    "10/25/50 % quantiles).",
)


@app.command()
def dashboard(
    study: str = typer.Argument(None, help=STUDY_HELP + " Omit to serve every study in --storage."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 exposes it)."),
    port: int = typer.Option(8080, min=0, max=65535, help="TCP port; 0 picks a free one."),
    storage: str = typer.Option(None, help="Optuna storage URL (default studies/<name>.db)."),
    artifacts: Path = typer.Option(
        None, help="Artifact directory (default: beside the study, studies/<name>.artifacts)."
    ),
) -> None:
    """Open a study in optuna-dashboard, with architecture notes and the front's model code.

    Everything that can be refused (the study, its storage, the port) is checked before the
    notes are written: a refused dashboard leaves the study as it was."""
    from dimsearch.analysis.dashboard import bind_dashboard, prepare_dashboard, serve
    from dimsearch.search.study import open_storage, storage_url, study_id, study_name_of

    with user_errors():
        if study is None:
            if storage is None:
                found = sorted(p.name for p in Path("studies").glob("*.db"))
                raise DimsearchError(
                    "name a STUDY or give --storage"
                    + (f" (studies here: {', '.join(found)})" if found else "")
                )
            import optuna

            url = storage
            st = open_storage(storage, "dashboard", writable=True)
            names = [s.study_name for s in optuna.get_all_study_summaries(st)]
            studies = [optuna.load_study(study_name=n, storage=st) for n in names]
            art = artifacts or _artifact_dir(url, "dashboard")
        else:
            from dimsearch.search.study import open_study

            name, default_storage = study_name_of(study)
            url = storage_url(storage or default_storage, name)
            st = open_storage(url, name, writable=True)  # checks it exists, creates nothing
            studies = [open_study(name, st)]
            art = artifacts or _artifact_dir(url, name)
        server = bind_dashboard(st, host, port, art)  # a port in use is refused here
        for s in studies:
            summary = prepare_dashboard(s, art)
            console.print(
                f"{escape(summary.study)}: notes {summary.notes_written} written, "
                f"{summary.notes_unchanged} up to date; front artifacts "
                f"{summary.artifacts_uploaded} attached, {summary.artifacts_unchanged} up to date "
                f"({summary.exporter}) in {escape(str(art))}",
                soft_wrap=True,
            )
            for line in summary.skipped:
                console.print(f"  [yellow]{escape(line)}[/]", soft_wrap=True)

    def ready(url: str) -> None:
        if len(studies) == 1:
            url += f"/studies/{study_id(studies[0])}"
        console.print(f"dashboard: {url}  (Ctrl-C stops it)", soft_wrap=True)

    serve(server, host=host, ready=ready)


@app.command()
def report(
    study: str = typer.Argument(..., help=STUDY_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for index.html, PNGs, data.json."),
    storage: str = typer.Option(None, help="Optuna storage URL (default studies/<name>.db)."),
    reference: str = typer.Option(
        None,
        help="Hypervolume reference point, one value per objective in their units, e.g. "
        "0,3,50 (default: worst completed values + 10% of their range).",
    ),
    bins: int = BINS_OPTION,
    sample: str = typer.Option(
        None,
        help="Draw the design-space statistics from this sample (a table .json or a sample "
        "study) instead of the study's trials. Default: the study itself if it is a sample.",
    ),
    sample_storage: str = typer.Option(None, help="Optuna storage URL of a study --sample."),
    boot: int = BOOT_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Write a static HTML report of a study: fronts, hypervolume, importances, EDFs."""
    from rich.table import Table

    from dimsearch.analysis.report import write_report
    from dimsearch.search.sample import open_sample

    with user_errors():
        st = _open(study, storage)
        table = open_sample(sample, sample_storage) if sample else None
        rep = write_report(
            st,
            out,
            reference=_floats(reference, "--reference"),
            bins=bins,
            seed=seed,
            sample=table,
            n_boot=boot,
        )
    s = rep.summary
    table = Table(title=f"{escape(s['study'])}: report", show_header=False)
    table.add_column("", style="dim")
    table.add_column("")
    table.add_row("trials", ", ".join(f"{v} {k}" for k, v in s["states"].items()))
    if s["best"]:
        b = s["best"]
        table.add_row(
            "best accuracy",
            f"{b['accuracy']:.2f} % (trial {b['number']}"
            + (f", {escape(b['label'])})" if b["label"] else ")"),
        )
    table.add_row("Pareto front", f"{s['front_size']} trials")
    table.add_row("hypervolume", f"{s['hypervolume']:.4g}")
    table.add_row("design-space statistics", s["edf_source"]["note"])
    console.print(table)
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(
        f"report: {escape(str(rep.index))} ({len(rep.images)} figures, numbers in "
        f"{escape(rep.data.name)})",
        soft_wrap=True,
    )


@app.command()
def compare(
    study_a: str = typer.Argument(..., help=SOURCE_HELP),
    study_b: str = typer.Argument(..., help=SOURCE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for compare.png and data."),
    storage_a: str = typer.Option(None, help="Storage of STUDY_A (default studies/<name>.db)."),
    storage_b: str = typer.Option(None, help="Storage of STUDY_B (default studies/<name>.db)."),
    threshold: list[float] = THRESHOLD_OPTION,
    bins: int = BINS_OPTION,
    boot: int = BOOT_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Compare two design spaces: their error EDFs with bootstrap bands, plain and normalised
    to one complexity distribution. Samples (`dimsearch sample`) give unbiased EDFs."""
    from rich.table import Table

    from dimsearch.analysis.edf import compare_points
    from dimsearch.analysis.figures import plot_compare
    from dimsearch.outputs import check_out_dir

    with user_errors():
        check_out_dir(out)
        _floats_ok(threshold, "--threshold")
        (la, pa), (lb, pb) = _points(study_a, storage_a), _points(study_b, storage_b)
        if la == lb:
            la, lb = study_a, study_b
        cmp = compare_points(
            {la: pa, lb: pb}, thresholds=threshold or None, bins=bins, n_boot=boot, seed=seed
        )
        fig = plot_compare(cmp, Path(out) / "compare.png")
    (Path(out) / "compare.json").write_text(json_text(fig.to_dict(), indent=1))
    normed = cmp.normalization is not None
    table = Table(title="error EDFs" + (" (complexity-normalised)" if normed else " (raw)"))
    for col in ["study", "n", "n_eff", "mean error %", *(f"≤ {t:g} %" for t in cmp.thresholds)]:
        table.add_column(col, justify="left" if col == "study" else "right")
    for g in cmp.groups:
        s = g.normalized if normed and g.normalized else g.raw
        kind = "normalized" if normed and g.normalized else "raw"
        fr = [cmp.fractions[g.value][t][kind] for t in cmp.thresholds]
        table.add_row(
            escape(str(g.value)),
            str(g.raw.n),
            f"{s.n_effective:.1f}",
            f"{s.mean:.2f}",
            *(f"{f:.0%}" for f in fr),
        )
    console.print(table)
    if not normed:
        console.print("[yellow]note:[/] the studies share no FLOPs bin; compared raw")
    else:
        dropped = {k: v for k, v in cmp.normalization.dropped.items() if v}
        if dropped:
            console.print(
                "outside the common FLOPs range (weight 0): "
                + ", ".join(f"{escape(str(k))}: {v}" for k, v in dropped.items())
            )
    for bands in cmp.bands:
        _print_bands(bands, f"{la} vs {lb}")
    _print_source(la, pa)
    _print_source(lb, pb)
    console.print(f"compare: {escape(str(fig.path))}", soft_wrap=True)


@app.command()
def edf(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    by: str = typer.Option(
        "pool,pos", "--by", help="Design choices to split by, comma-separated (pool, pos, stem...)."
    ),
    storage: str = typer.Option(None, help="Optuna storage URL of a study SOURCE."),
    threshold: list[float] = THRESHOLD_OPTION,
    weighting: str = typer.Option(
        "plain,gflops,params",
        help="Weightings, comma-separated: plain, gflops (complexity-normalised by GFLOPs), "
        "params (by parameter count).",
    ),
    bins: int = BINS_OPTION,
    boot: int = BOOT_OPTION,
    seed: int = SEED_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Error EDFs split by design choices, with bootstrap bands: per value n, median error and
    the share of models under a few errors, each with its 95% interval, and whether the
    values' bands separate."""
    from dimsearch.analysis.edf import WEIGHTINGS, edf_bands_by_choice
    from dimsearch.analysis.points import source_note

    params = [p.strip() for p in by.split(",") if p.strip()]
    kinds = [w.strip() for w in weighting.split(",") if w.strip()]
    with user_errors():
        bad = [w for w in kinds if w not in WEIGHTINGS]
        if bad or not kinds:
            raise DimsearchError(
                f"--weighting must be some of {', '.join(WEIGHTINGS)}; got {weighting!r}"
            )
        if not params:
            raise DimsearchError(f"--by must name at least one design choice; got {by!r}")
        _floats_ok(threshold, "--threshold")
        name, pts = _points(source, storage)
        results = {
            p: edf_bands_by_choice(
                pts,
                p,
                weightings=kinds,
                thresholds=threshold or None,
                bins=bins,
                n_boot=boot,
                seed=seed,
            )
            for p in params
        }
    if as_json:
        console.print_json(
            json_text(
                {
                    "source": {"name": name, "kind": pts.source, "note": source_note(pts)},
                    "by": {p: [b.to_dict() for b in bs] for p, bs in results.items()},
                }
            )
        )
        return
    _print_source(name, pts)
    for p, bs in results.items():
        for bands in bs:
            _print_bands(bands, f"{name} by {p}")
    if not pts.is_sample:
        _print_source(name, pts)
