"""Commands about single architectures: `zoo`, `describe`, `bench generator`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dimsearch._values import json_text
from dimsearch.cli._common import (
    MAX_BATCH,
    MAX_CLASSES,
    MAX_IMG_SIZE,
    MAX_REPEATS,
    app,
    bench_app,
    console,
    user_errors,
)
from dimsearch.config import ArchConfig
from dimsearch.errors import ArchError


def load_arch(name_or_file: str) -> ArchConfig:
    """A zoo name, or a JSON/YAML file holding an `ArchConfig` dict (as trials store them)."""
    from dimsearch import zoo

    path = Path(name_or_file)
    if name_or_file in zoo.names() or not path.suffix:
        return zoo.get(name_or_file)
    if not path.is_file():
        raise ArchError(f"{path}: no such file, and not a zoo name ({', '.join(zoo.names())})")
    if path.suffix in (".yaml", ".yml"):
        from dimsearch.search.loader import read_yaml

        data = read_yaml(path, ArchError)
    else:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as err:
            raise ArchError(f"{path}: cannot be read ({err})") from None
        except json.JSONDecodeError as err:
            raise ArchError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict) and "arch" in data:  # a trial record or export manifest
        data = data["arch"]
    try:
        return ArchConfig.from_dict(data)
    except ArchError as err:
        raise ArchError(f"{path}: {err}") from None


@app.command("zoo")
def zoo_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    img_size: int = typer.Option(
        224, min=1, max=MAX_IMG_SIZE, help="Resolution the costs are computed at."
    ),
) -> None:
    """List the published fixed points: params, GFLOPs (analytic, fvcore convention), top-1."""
    from dimsearch import cost, zoo

    rows = []
    for e in zoo.entries():
        with user_errors():
            est = cost.estimate(e.cfg, img_size)
        rows.append(
            {
                "name": e.name,
                "label": e.label,
                "family": e.family,
                "params": est.params,
                "gflops": est.flops / 1e9,
                "top1": e.top1,
                "source": e.source,
            }
        )
    if as_json:
        console.print_json(json_text(rows))
        return
    table = Table(title=f"dimsearch zoo @ {img_size}px (FLOPs = multiply-adds)")
    for col in ("name", "label", "params", "GFLOPs", "top-1 (%)", "source"):
        table.add_column(
            col, justify="right" if col in ("params", "GFLOPs", "top-1 (%)") else "left"
        )
    for r in rows:
        top1 = f"{r['top1']:.1f}" if r["top1"] is not None else "-"
        table.add_row(
            r["name"], r["label"], f"{r['params']:,}", f"{r['gflops']:.4f}", top1, r["source"]
        )
    console.print(table)


@app.command()
def describe(
    name_or_file: str = typer.Argument(..., help="Zoo name or a JSON/YAML ArchConfig file."),
    img_size: int = typer.Option(224, min=1, max=MAX_IMG_SIZE, help="Input resolution."),
    num_classes: int = typer.Option(1000, min=1, max=MAX_CLASSES, help="Classifier width."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Per-stage table of an architecture: grid, width, heads, depth, params and FLOPs."""
    from dimsearch import cost

    with user_errors():
        cfg = load_arch(name_or_file)
        est = cost.estimate(cfg, img_size, num_classes=num_classes)
    if as_json:
        console.print_json(json_text({"arch": cfg.to_dict(), "cost": est.to_dict()}))
        return
    table = Table(title=f"{escape(cfg.name or name_or_file)} @ {img_size}px, {num_classes} classes")
    for col in ("part", "grid", "width", "heads", "depth", "attention", "pos", "params", "MFLOPs"):
        table.add_column(col, justify="left" if col in ("part", "attention", "pos") else "right")
    for part in est.parts:
        stage = cfg.stages[part.stage] if part.stage is not None else None
        attn = "-"
        if stage is not None:
            attn = "full" if stage.sr_ratio == 1 else f"sr{stage.sr_ratio} {stage.sr_kind}"
            if stage.head_interaction:
                attn += " +mix"
        table.add_row(
            part.name,
            f"{part.grid[0]}x{part.grid[1]}" if part.grid else "-",
            str(stage.dim) if stage else "-",
            str(stage.heads) if stage else "-",
            str(stage.depth) if stage else "-",
            attn,
            stage.pos if stage else "-",
            f"{part.params:,}",
            f"{part.flops / 1e6:,.1f}",
        )
    table.add_section()
    table.add_row(
        "total", "", "", "", str(cfg.depth), "", "", f"{est.params:,}", f"{est.flops / 1e6:,.1f}"
    )
    console.print(table)
    console.print(
        f"GFLOPs (multiply-adds): {est.flops / 1e9:.4f}   params: {est.params / 1e6:.3f}M"
    )


@bench_app.command("generator")
def bench_generator_cmd(
    model: str = typer.Option("pit_s", help="Zoo name with a timm twin (PiT family)."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    batch_size: int = typer.Option(
        None, "--batch", min=1, max=MAX_BATCH, help="Default 128 on CUDA, 8 on CPU."
    ),
    img_size: int = typer.Option(224, min=1, max=MAX_IMG_SIZE, help="Input resolution."),
    rounds: int = typer.Option(41, min=1, max=MAX_REPEATS, help="Rounds, each one paired ratio."),
    repeats: int = typer.Option(
        3,
        min=1,
        max=MAX_REPEATS,
        help="Timed passes per model per round, alternating with the other's.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Also print the figures as JSON."),
) -> None:
    """Throughput of the generated model vs timm's, timed alternately in one process."""
    from dimsearch.models.benchmark import bench_generator

    with user_errors():
        res = bench_generator(model, device, batch_size, img_size, rounds, repeats)
    d = res.to_dict()
    table = Table(
        title=f"{escape(model)} vs timm {res.timm_model}: {res.device_name}, "
        f"batch {res.batch_size}, "
        f"{res.img_size}px, {res.dtype}"
    )
    for col in ("model", "median img/s", "min", "max"):
        table.add_column(col, justify="right")
    for label, key, runs in (("dimsearch", "ours", res.ours), ("timm", "timm", res.timm)):
        table.add_row(label, f"{d[f'{key}_median']:.1f}", f"{min(runs):.1f}", f"{max(runs):.1f}")
    console.print(table)
    low, high, coverage = res.interval
    console.print(
        f"throughput ratio (ours / timm), median of {len(res.ratios)} paired rounds: "
        f"{res.ratio:.3f}, {coverage:.0%} interval {low:.3f}-{high:.3f} "
        f"(rounds {min(res.ratios):.3f}-{max(res.ratios):.3f})  -> {res.verdict}"
    )
    if as_json:
        console.print_json(json_text(d))
