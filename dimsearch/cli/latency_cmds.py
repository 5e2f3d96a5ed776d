"""`dimsearch latency calibrate|check`: the per-device latency table and how good it is; and
`dimsearch bench lock`: what the measurement lock buys a measured figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from dimsearch._values import json_text
from dimsearch.cli._common import (
    MAX_BATCH,
    MAX_DRAWS,
    MAX_IMG_SIZE,
    MAX_REPEATS,
    MAX_SEED,
    MAX_THREADS,
    app,
    bench_app,
    console,
    print_table,
    user_errors,
)

latency_app = typer.Typer(
    help="Latency prediction: time a space's building blocks once per device, then add up.",
    no_args_is_help=True,
)
app.add_typer(latency_app, name="latency")

_SPACE = typer.Argument(..., help="Search-space YAML, e.g. spaces/pit.yaml.")
_DEVICE = typer.Option(None, help="cpu or cuda[:N] (default: the space's latency.device).")
_BATCH = typer.Option(
    None, "--batch-size", min=1, max=MAX_BATCH, help="Images per pass (default: the space's)."
)
_PRECISION = typer.Option(None, help="fp32, bf16 or fp16 (default: the space's, else fp32).")
_MODE = typer.Option(None, help="latency (ms) or throughput (images/s); default the space's.")
_THREADS = typer.Option(
    None,
    min=1,
    max=MAX_THREADS,
    help="torch threads (default: the space's resources.cpus, as a trial runs).",
)
_CLOCK = typer.Option(
    None, help="wall (elapsed) or cpu (thread CPU time; 1 thread on cpu only); default the space's."
)
_REPEATS = typer.Option(
    None, min=1, max=MAX_REPEATS, help="Timed passes of each (default: the space's)."
)
_WARMUP = typer.Option(
    None, min=0, max=MAX_REPEATS, help="Untimed passes first (default: the space's)."
)


def _say(text: str) -> None:
    """A progress line: it quotes names from the space file, so it is never read as markup."""
    console.print(text, markup=False)


def _settings(spc: Any, **overrides: Any) -> Any:
    """The space's ``latency:`` section as its trials measure (`table_settings`), with the
    command line's overrides on top."""
    import dataclasses

    from dimsearch.search.gate import table_settings

    return dataclasses.replace(
        table_settings(spc), **{k: v for k, v in overrides.items() if v is not None}
    )


def _by_kind(parts: Any) -> str:
    from dimsearch.cost._parts import count_by_kind

    return ", ".join(f"{k} {n}" for k, n in count_by_kind(parts).items())


@latency_app.command("calibrate")
def calibrate_cmd(
    space: Path = _SPACE,
    samples: int = typer.Option(
        5000, min=1, max=MAX_DRAWS, help="Architectures drawn to collect part shapes."
    ),
    fit_models: int = typer.Option(
        10, min=0, max=MAX_REPEATS, help="Whole models timed to fit the scale and overhead."
    ),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Sampler seed of the calibration draws."),
    refresh: bool = typer.Option(
        False, help="Time everything again, ignoring the cached table (e.g. on a now quiet box)."
    ),
    device: str = _DEVICE,
    batch_size: int = _BATCH,
    precision: str = _PRECISION,
    mode: str = _MODE,
    threads: int = _THREADS,
    clock: str = _CLOCK,
    repeats: int = _REPEATS,
    warmup: int = _WARMUP,
) -> None:
    """Time every building block SPACE can produce on this device, once; cache the table.

    A rerun (or another space on the same device and settings) times only what the cached
    table lacks.
    """
    from dimsearch.cost import calibrate, distinct_parts, open_table
    from dimsearch.cost._check import sample_archs
    from dimsearch.search import load_space

    with user_errors():
        spc = load_space(space)
        settings = _settings(
            spc,
            device=device,
            batch_size=batch_size,
            precision=precision,
            mode=mode,
            threads=threads,
            clock=clock,
            repeats=repeats,
            warmup=warmup,
        )
        archs, draws = sample_archs(spc, samples, seed=seed)
        img, classes = spc.target_img_size, spc.num_classes
        parts = distinct_parts(archs, img, classes)
        late = distinct_parts(archs[: int(len(archs) * 0.9)], img, classes)
        _say(
            f"{spc.name}: {len(archs)} architectures within the budgets in {draws} draws use "
            f"{len(parts)} distinct parts ({_by_kind(parts)}); the last 10% of them added "
            f"{len(parts) - len(late)}"
        )
        table = open_table(settings)
        if refresh:
            table.parts.clear()
            table.models.clear()
        _say(f"table: {table.describe()}")
        report = calibrate(
            table,
            archs,
            img_size=img,
            num_classes=classes,
            fit_models=archs[:fit_models],
            space=spc.name,
            progress=_say,
        )
    c = table.correction(spc.name)
    console.print(
        f"measured {report.parts_measured} of {report.parts_needed} parts and "
        f"{report.models_measured} of {report.models_needed} whole models in "
        f"{report.seconds:.1f} s; the table holds {len(table.parts)} parts, {len(table.models)} "
        f"models\ncorrection: predicted = {c.scale:.3f} x sum(parts) + {c.overhead_ms:.3f} ms "
        f"(fitted on {c.models} models)\ncached in {escape(str(table.path))}"
    )


@latency_app.command("check")
def check_cmd(
    space: Path = _SPACE,
    n: int = typer.Option(
        50, "--n", min=2, max=MAX_REPEATS, help="Held-out architectures to time."
    ),
    seed: int = typer.Option(
        1, min=0, max=MAX_SEED, help="Sampler seed of the held-out draws (not calibration's)."
    ),
    out: Path = typer.Option(None, help="Write every architecture's figures here (JSON)."),
    device: str = _DEVICE,
    batch_size: int = _BATCH,
    precision: str = _PRECISION,
    mode: str = _MODE,
    threads: int = _THREADS,
    clock: str = _CLOCK,
    repeats: int = _REPEATS,
    warmup: int = _WARMUP,
) -> None:
    """Time N held-out architectures of SPACE alone; score the table's predictions and
    GFLOPs alone (a linear fit) against them."""
    from dimsearch.cost import open_table
    from dimsearch.cost._check import check_predictor
    from dimsearch.search import load_space

    with user_errors():
        spc = load_space(space)
        settings = _settings(
            spc,
            device=device,
            batch_size=batch_size,
            precision=precision,
            mode=mode,
            threads=threads,
            clock=clock,
            repeats=repeats,
            warmup=warmup,
        )
        table = open_table(settings)
        _say(f"table: {table.describe()}")
        res = check_predictor(spc, table, n=n, seed=seed, progress=_say)
    grid = Table(title=f"{escape(spc.name)}: {n} held-out architectures, measured alone")
    for col in ("predictor", "fit: a * x + b", "within +-10%", "Spearman", "MAPE", "worst"):
        grid.add_column(col, justify="left" if col == "predictor" else "right")
    for label, s in res.scores.items():
        a, b = res.fits[label]
        unit = "ms/GFLOP" if label.startswith("GFLOPs") else "x"
        grid.add_row(
            label,
            f"{a:.3f} {unit}, {b:+.2f} ms",
            f"{100 * s.within_10:.0f}%",
            f"{s.spearman:.3f}",
            f"{100 * s.mape:.1f}%",
            f"{100 * s.worst:.0f}%",
        )
    console.print(grid)
    spread = sorted(res.spread)
    console.print(
        f"fits: relative least squares on the same {res.calibration_models} calibration models "
        f"for both; 'refit now' on them timed again beside the held-out ones\n"
        f"measured {n} + {res.calibration_models} models in {res.measure_seconds:.0f} s "
        f"({table.settings.repeats} passes each, median; median spread (p90-p10)/median "
        f"{100 * spread[len(spread) // 2]:.0f}%); {res.missing.parts_measured} parts measured "
        f"for them; check took {res.seconds:.0f} s"
    )
    if out is not None:
        rows = [
            {
                "arch": arch.to_dict(),
                "measured_ms": res.measured_ms[i],
                "min_ms": res.min_ms[i],
                "spread": res.spread[i],
                "gflops": res.gflops[i],
                "predicted_ms": {k: v[i] for k, v in res.predictions.items()},
            }
            for i, arch in enumerate(res.archs)
        ]
        out.write_text(json_text({"table": table.identity, "rows": rows}, indent=1))
        console.print(f"figures written to {escape(str(out))}")


@bench_app.command("lock")
def bench_lock_cmd(
    model: str = typer.Option("pit_ti", help="Zoo name of the model measured."),
    trainers: int = typer.Option(
        2, min=1, max=MAX_THREADS, help="Training processes beside the busy rounds (1 thread each)."
    ),
    rounds: int = typer.Option(10, min=2, max=MAX_REPEATS, help="Rounds per condition."),
    passes: int = typer.Option(30, min=3, max=MAX_REPEATS, help="Timed passes per round."),
    img_size: int = typer.Option(224, min=1, max=MAX_IMG_SIZE, help="Input resolution."),
    batch_size: int = typer.Option(
        1, "--batch-size", min=1, max=MAX_BATCH, help="Images per pass."
    ),
    threads: int = typer.Option(1, min=1, max=MAX_THREADS, help="Threads while measuring."),
    as_json: bool = typer.Option(False, "--json", help="Also print the figures as JSON."),
) -> None:
    """Latency measured alone, beside training processes, and beside them with the
    measurement lock: what the lock buys on this machine (CPU)."""
    from dimsearch.train.lock_bench import CONDITIONS, bench_lock

    with user_errors():
        res = bench_lock(
            model,
            trainers=trainers,
            rounds=rounds,
            passes=passes,
            img_size=img_size,
            batch_size=batch_size,
            threads=threads,
            progress=lambda line: console.print(escape(line), soft_wrap=True),
        )
    table = Table(
        title=f"{escape(model)} on {escape(res.device_name)}: batch {batch_size}, {img_size}px, "
        f"{threads} thread(s), {passes} passes a round, {trainers} trainer(s) beside"
    )
    for col in ("condition", "rounds", "median ms [95% CI]", "spread", "worst spread", "lock wait"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    summary = {c: res.summary(c) for c in CONDITIONS}
    for c, s in summary.items():
        table.add_row(
            c,
            str(len(res.medians[c])),
            f"{s['median_ms']:.2f} [{s['low_ms']:.2f}, {s['high_ms']:.2f}]"
            + ("" if s["coverage"] >= 0.95 else f" ({s['coverage']:.0%})"),
            f"{s['spread']:.0%}",
            f"{s['worst_spread']:.0%}",
            f"{s['wait_s']:.2f} s" if c == "busy, locked" else "-",
        )
    print_table(table)
    alone = summary["alone"]["median_ms"]
    console.print(
        "busy / alone, median ms: no lock "
        f"{summary['busy, no lock']['median_ms'] / alone:.3f}, locked "
        f"{summary['busy, locked']['median_ms'] / alone:.3f}; CI: order statistics of the "
        "rounds' medians (its coverage in brackets where too few rounds give 95%); spread: "
        "(p90 - p10) / median per round, median over rounds; the trainers' median epoch "
        + ("-" if res.epoch_s is None else f"{res.epoch_s:.2f} s")
        + " (the longest a locked round waits)",
        soft_wrap=True,
    )
    if as_json:
        console.print_json(json_text(res.to_dict()))
