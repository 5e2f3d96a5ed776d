"""Commands about proxy datasets: `data prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from dimsearch.cli._common import console, data_app, user_errors
from dimsearch.errors import SpaceError

_SHOWN_CLASSES = 10  # class names printed before "..."


def _space_data(space: Path) -> Any:
    """The ``data:`` mapping of a search-space YAML file (None when it has none)."""
    import yaml

    try:
        doc = yaml.safe_load(space.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise SpaceError(
            f"{space}: not a UTF-8 text file (byte {err.start}); expected a space YAML"
        ) from None
    except (OSError, yaml.YAMLError) as err:
        why = " ".join(str(err).split())
        raise SpaceError(f"{space}: cannot read it as YAML ({why})") from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise SpaceError(f"{space}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc.get("data")


def _say(text: str) -> None:
    """One line, never wrapped, so paths stay whole and greppable."""
    console.print(text, soft_wrap=True)


def _size(n: int) -> str:
    """Bytes for people: ``68.9 MB``."""
    units, value, k = ("B", "KB", "MB", "GB", "TB"), float(n), 0
    while value >= 1024 and k < len(units) - 1:
        value, k = value / 1024, k + 1
    return f"{n} B" if k == 0 else f"{value:.1f} {units[k]}"


@data_app.command("prepare")
def prepare(
    space: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help="Search-space YAML; its data: section is used."
    ),
    kind: str | None = typer.Option(None, help="synthetic | imagefolder | idx"),
    root: Path | None = typer.Option(None, help="imagefolder: train/ + val/ folder; idx: files."),
    img_size: int | None = typer.Option(None, help="Proxy resolution (square)."),
    classes: int | None = typer.Option(None, help="Number of classes (synthetic) or subset."),
    train_per_class: int | None = typer.Option(None, help="Train images per class (cap)."),
    val_per_class: int | None = typer.Option(None, help="Val images per class (cap)."),
    cache_dir: Path | None = typer.Option(None, help="Cache root (default $DIMSEARCH_CACHE)."),
    on_corrupt: str | None = typer.Option(None, help="skip | error"),
    workers: int | None = typer.Option(None, help="Decoding processes (default: all CPUs)."),
    seed: int | None = typer.Option(None, help="Seed of class subsets, caps, synthetic images."),
) -> None:
    """Build (or verify and reuse) the proxy dataset cache, then say what was found.

    Options override the space file's data: section; without a file they describe it alone.
    """
    from dimsearch.data import DataConfig, load_data

    with user_errors():
        values: dict[str, Any] = {}
        where = "data"
        if space is not None:
            where = f"{space}: data"
            section = _space_data(space)
            if section is None:
                _say(f"[yellow]note:[/] {escape(str(space))} has no data: section; using defaults")
            elif not isinstance(section, dict):
                raise SpaceError(f"{where} must be a mapping of data options, got {section!r}")
            else:
                values.update(section)  # checked below, once the options are merged in
        options = {
            "kind": kind,
            "root": str(root) if root is not None else None,
            "img_size": img_size,
            "num_classes": classes,
            "train_per_class": train_per_class,
            "val_per_class": val_per_class,
            "cache_dir": str(cache_dir) if cache_dir is not None else None,
            "on_corrupt": on_corrupt,
            "workers": workers,
            "seed": seed,
        }
        values.update({k: v for k, v in options.items() if v is not None})
        cfg = DataConfig.from_dict(values, where=where)
        data = load_data(cfg, progress=True)
    _report(data)


def _report(data: Any) -> None:
    """Print what `load_data` found, in the order a user checks it."""
    info = data.info
    _say(
        f"[bold]{escape(data.name)}[/]: {info['kind']} from {escape(info['source'])}, "
        f"{data.num_classes} classes, {data.img_size} px, {data.channels} channel(s)"
    )
    names = ", ".join(data.class_names[:_SHOWN_CLASSES])
    extra = data.num_classes - _SHOWN_CLASSES
    _say(f"  classes: {escape(names)}" + (f", ... ({extra} more)" if extra > 0 else ""))
    _say(f"  train: {info['train_count']} images   val: {info['val_count']} images")
    stats = ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(data.mean, data.std, strict=True))
    _say(f"  mean/std per channel: {stats}")
    skipped, shown = info["skipped_count"], info["skipped_first"]
    if skipped:
        _say(f"  [yellow]skipped {skipped} unreadable file(s):[/]")
        for path in shown:
            _say(f"    {escape(path)}")
        if skipped > len(shown):
            _say(f"    ... ({skipped - len(shown)} more)")
    else:
        _say("  skipped: none")
    if info["cache_path"] is None:
        _say(f"  cache: none (generated in {info['seconds']:.2f} s)")
    else:
        state = "reused" if info["cache_reused"] else f"built ({info['cache_reason']})"
        _say(
            f"  cache: {escape(info['cache_path'])} ({_size(info['cache_bytes'])}), {state}, "
            f"{info['seconds']:.2f} s"
        )
