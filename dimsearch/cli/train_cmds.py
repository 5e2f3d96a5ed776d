"""Commands about proxy training: `proxy-check` and `bench train`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from dimsearch._values import json_text
from dimsearch.cli._common import (
    MAX_BATCH,
    MAX_CLASSES,
    MAX_DRAWS,
    MAX_IMG_SIZE,
    MAX_REPEATS,
    app,
    bench_app,
    console,
    user_errors,
)

_MAX_SEEDS = 100
_MAX_EPOCHS = 10_000

if TYPE_CHECKING:
    from dimsearch.data import DataConfig
    from dimsearch.train import ProxyCheckResult, TrainBench, TrainConfig


def _print_json(payload: Any) -> None:
    """One line of JSON, never wrapped or read as markup, so scripts can parse it."""
    console.print(json_text(payload), markup=False, soft_wrap=True)


# -- proxy-check ---------------------------------------------------------------------------------


@app.command("proxy-check")
def proxy_check_cmd(
    space: Path = typer.Option(
        None, help="Space YAML whose data: and train: mappings set the proxy."
    ),
    models: str = typer.Option(
        None, help="Comma-separated zoo names (default pit_ti,pit_xs,pit_s,rest_lite,rest_small)."
    ),
    seeds: int = typer.Option(
        2, min=1, max=_MAX_SEEDS, help="Training seeds per model (0, 1, ...)."
    ),
    epochs: int = typer.Option(None, min=1, max=_MAX_EPOCHS, help="Override train.epochs."),
    img_size: int = typer.Option(
        None, min=1, max=MAX_IMG_SIZE, help="Override data.img_size (default 48 without --space)."
    ),
    data_kind: str = typer.Option(None, help="Override data.kind (synthetic, imagefolder, idx)."),
    root: str = typer.Option(None, help="Override data.root (imagefolder / idx folder)."),
    classes: int = typer.Option(None, min=1, max=MAX_CLASSES, help="Override data.num_classes."),
    train_per_class: int = typer.Option(
        None, min=1, max=MAX_DRAWS, help="Override data.train_per_class."
    ),
    val_per_class: int = typer.Option(
        None, min=1, max=MAX_DRAWS, help="Override data.val_per_class."
    ),
    batch: int = typer.Option(None, min=1, max=MAX_BATCH, help="Override train.batch_size."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the results as one JSON line."),
) -> None:
    """Train zoo fixed points under the proxy settings and compare their ranking with ImageNet.

    Prints each model's proxy accuracy per seed, Kendall's tau between the mean proxy accuracy
    and the published top-1, and how far seeds disagree.
    """
    from dimsearch.train import DEFAULT_MODELS, proxy_check

    with user_errors():
        data_cfg, train_cfg = _proxy_settings(
            space,
            data={
                "img_size": img_size,
                "kind": data_kind,
                "root": root,
                "num_classes": classes,
                "train_per_class": train_per_class,
                "val_per_class": val_per_class,
            },
            train={"epochs": epochs, "batch_size": batch},
        )
        names = [m.strip() for m in models.split(",") if m.strip()] if models else DEFAULT_MODELS
        result = proxy_check(
            names,
            range(seeds),
            data=data_cfg,
            train=train_cfg,
            device=device,
            on_run=lambda name, seed, r: console.print(
                f"  {escape(name)} seed {seed}: {r.final_acc:.2f}% after {_epochs(r.epochs_run)} "
                f"({r.seconds:.1f} s, {r.device})"
            ),
        )
    _print_proxy_check(result)
    if as_json:
        _print_json(result.to_dict())


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _proxy_settings(
    space: Path | None, *, data: dict[str, Any], train: dict[str, Any]
) -> tuple[DataConfig, TrainConfig]:
    """The space's settings (or the defaults) with the options given on the command line."""
    from dimsearch.data import DataConfig
    from dimsearch.train import TrainConfig, default_data

    if space is None:
        base_data, base_train = default_data(), TrainConfig()
    else:
        from dimsearch.search import load_space

        loaded = load_space(space)
        base_data, base_train = loaded.data, loaded.train
    data_over = {k: v for k, v in data.items() if v is not None}
    train_over = {k: v for k, v in train.items() if v is not None}
    return (
        DataConfig.from_dict({**base_data.to_dict(), **data_over}, where="data"),
        TrainConfig.from_dict({**base_train.to_dict(), **train_over}, where="train"),
    )


def _print_proxy_check(res: ProxyCheckResult) -> None:
    table = Table(
        title=f"proxy check on {escape(res.data_name)}, {_epochs(res.train['epochs'])} "
        f"({res.seconds:.0f} s)"
    )
    table.add_column("model")
    table.add_column("ImageNet top-1", justify="right")
    for seed in res.seeds:
        table.add_column(f"seed {seed}", justify="right")
    table.add_column("mean", justify="right")
    table.add_column("spread", justify="right")
    for row in res.rows:
        top1 = f"{row.top1:.1f}" if row.top1 is not None else "-"
        accs = [f"{a:.2f}" for a in row.accs]
        table.add_row(escape(row.label), top1, *accs, f"{row.mean:.2f}", f"{row.spread:.2f}")
    console.print(table)
    tau = f"{res.tau:+.3f} (p = {res.p_value:.3f})" if res.tau is not None else "undefined"
    console.print(f"Kendall tau (mean proxy acc vs ImageNet top-1): {tau}")
    console.print(
        f"seed spread: mean {res.mean_spread:.2f}, max {res.max_spread:.2f} points "
        f"over {len(res.seeds)} seeds"
    )
    console.print(res.verdict())


# -- bench train ---------------------------------------------------------------------------------


@bench_app.command("train")
def bench_train_cmd(
    model: str = typer.Option(
        "pit_ti", help="Zoo name (PiT ones also get a plain-timm reference)."
    ),
    img_size: int = typer.Option(128, min=1, max=MAX_IMG_SIZE, help="Input resolution."),
    batch: int = typer.Option(
        None, min=1, max=MAX_BATCH, help="Images per step (default 1024 on CUDA, 64 on CPU)."
    ),
    steps: int = typer.Option(
        None, min=1, max=MAX_REPEATS, help="Timed steps per variant (default 50 CUDA, 10 CPU)."
    ),
    warmup_steps: int = typer.Option(
        None, min=0, max=MAX_REPEATS, help="Untimed steps first (default 10 CUDA, 2 CPU)."
    ),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile our model (CUDA)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last (CUDA)."),
    as_json: bool = typer.Option(False, "--json", help="Also print the figures as one JSON line."),
) -> None:
    """Proxy-training throughput: ours vs the same step on random tensors vs plain timm, and MFU."""
    from dimsearch.train import bench_train

    with user_errors():
        res = bench_train(
            model,
            img_size,
            batch=batch,
            steps=steps,
            warmup_steps=warmup_steps,
            device=device,
            compile=compile,
            channels_last=channels_last,
        )
    _print_bench(res)
    if as_json:
        _print_json(res.to_dict())


def _print_bench(res: TrainBench) -> None:
    table = Table(
        title=f"bench train {escape(res.model)}: {res.device_name}, batch {res.batch}, "
        f"{res.img_size}px, "
        f"{res.amp}, {res.steps} timed steps"
    )
    for col in ("variant", "img/s", "ms/step", "MFU"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    rows = [
        ("(a) ours: data + step", res.ours, res.mfu_ours),
        ("(b) ours: step on random tensors", res.random, res.mfu_random),
    ]
    if res.timm is not None:
        rows.append((f"(c) plain timm {res.timm_model}", res.timm, res.mfu_timm))
    for label, rate, mfu in rows:
        mfu_text = f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
        table.add_row(label, f"{rate:,.1f}", f"{1000 * res.batch / rate:.2f}", mfu_text)
    console.print(table)
    verdict = "ok" if res.ratio_data >= 0.9 else "BELOW TARGET"
    console.print(f"ratio a/b (data path cost, target >= 0.9): {res.ratio_data:.3f} -> {verdict}")
    if res.ratio_timm is not None:
        console.print(f"ratio a/c (ours / plain timm): {res.ratio_timm:.3f}")
    mfu = f"{100 * res.mfu_ours:.1f}%" if res.mfu_ours is not None else "n/a"
    console.print(
        f"(d) MFU of (a): {mfu}  ({res.macs_per_image / 1e9:.4f} GMACs/image x 6 x img/s / peak)"
    )
    for note in res.notes:
        console.print(f"note: {note}")
