"""Predicted latency: time each building block once per device, then add them up.

nn-Meter (Zhang et al., MobiSys 2021) and LitePred predict a model's latency from a table of
its kernels' latencies, measured once per device. Here the kernels are dimsearch's own parts
(`decompose`): the stem, transitions, stage entries, attention and MLP halves of each block,
and the head, each at its exact shape. `calibrate` times every distinct part alone (through
the real layers) and a few whole models; `predict_latency` sums the parts of a config and
applies a two-number correction fitted on those whole models::

    predicted_ms = scale * sum(count * part_ms) + overhead_ms

The correction absorbs what parts timed alone do not see (caches cooled by the neighbouring
layers, the per-call cost of the model's own forward). It is fitted by least squares on the
relative error, so small and large models weigh alike.

A table is one device under one set of settings (batch, precision, threads, clock, software)
and lives as JSON under ``<cache>/latency/`` (``$DIMSEARCH_CACHE`` or ``~/.cache/dimsearch``),
named by those settings: a rerun, or a second space on the same device, measures only the
parts and models the table does not hold yet.

Predicting needs no torch: a search can reject a sample over ``max_latency_ms`` before it is
built, as the params and GFLOPs budgets do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimsearch.config import ArchConfig
from dimsearch.cost._latency import LatencySettings, device_type
from dimsearch.cost._parts import Part, decompose
from dimsearch.errors import LatencyError

__all__ = [
    "Correction",
    "LatencyTable",
    "calibrate",
    "fit_relative",
    "predict_latency",
    "table_path",
]

TABLE_FORMAT = 1


@dataclass(frozen=True)
class Correction:
    """``predicted = scale * parts_sum + overhead_ms``, and the models it was fitted on."""

    scale: float = 1.0
    overhead_ms: float = 0.0
    models: int = 0

    def __call__(self, parts_ms: float) -> float:
        return self.scale * parts_ms + self.overhead_ms


def fit_relative(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``(a, b)`` minimising the squared relative error of ``a*x + b`` against ``y``.

    With one point (or all ``x`` alike) only ``a`` is fitted (``b = 0``); with none,
    ``(1, 0)``. Used for the predictor's correction and, the same way, for the GFLOPs
    baseline it is compared with, so neither gets a better fit than the other.
    """
    pts = [(xi, yi) for xi, yi in zip(x, y, strict=True) if yi > 0]
    if not pts:
        return 1.0, 0.0
    su2 = sum((xi / yi) ** 2 for xi, yi in pts)
    suv = sum(xi / yi**2 for xi, yi in pts)
    sv2 = sum(1 / yi**2 for _, yi in pts)
    su = sum(xi / yi for xi, yi in pts)
    sv = sum(1 / yi for _, yi in pts)
    det = su2 * sv2 - suv**2
    if len(pts) >= 2 and det > 1e-12 * su2 * sv2:
        return (su * sv2 - sv * suv) / det, (su2 * sv - suv * su) / det
    return (su / su2 if su2 > 0 else 1.0), 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


@dataclass
class LatencyTable:
    """Timed parts and whole models of one device under one set of settings.

    Attributes:
        settings: how every entry was timed (`LatencySettings`, batch and threads resolved).
        device_name: CPU model or GPU name.
        software: versions that timed it (``torch``, ``dimsearch``).
        parts: part key -> ``{"ms": median, "min_ms", "repeats"}``.
        models: arch hash -> ``{"arch", "img_size", "num_classes", "ms", "space"}``: the whole
            models the corrections are fitted on.
        path: where it is cached (None: not cached).
    """

    settings: LatencySettings
    device_name: str
    software: dict[str, str]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None
    _corrections: dict[tuple[Any, ...], Correction] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # -- identity ----------------------------------------------------------------------------

    @property
    def identity(self) -> dict[str, Any]:
        """What makes two tables' figures comparable (and names the cache file)."""
        s = self.settings
        return {
            "device": device_type(s.device),
            "device_name": self.device_name,
            "batch_size": s.batch,
            "precision": s.precision,
            "mode": s.mode,
            "threads": s.threads,
            "clock": s.clock,
            "software": dict(sorted(self.software.items())),
        }

    @property
    def key(self) -> str:
        """The cache file stem: readable settings plus a hash of the full identity."""
        ident = self.identity
        digest = hashlib.blake2b(
            json.dumps(ident, sort_keys=True).encode(), digest_size=4
        ).hexdigest()
        parts = [
            ident["device"],
            ident["device_name"][:24],
            f"b{ident['batch_size']}",
            ident["precision"],
            f"t{ident['threads']}",
            ident["mode"],
            ident["clock"],
            f"torch{self.software.get('torch', '')}",
            digest,
        ]
        return _slug("-".join(str(p) for p in parts))

    def describe(self) -> str:
        i = self.identity
        sw = ", ".join(f"{k} {v}" for k, v in i["software"].items())
        return (
            f"{i['device_name']} ({i['device']}), batch {i['batch_size']}, {i['precision']}, "
            f"{i['threads']} thread(s), {i['mode']}, {i['clock']} clock; {sw}"
        )

    # -- lookups -----------------------------------------------------------------------------

    def missing(self, parts: Iterable[Part]) -> list[Part]:
        """The ``parts`` this table has no timing for, in order."""
        return sorted({p for p in parts if p.key not in self.parts})

    def parts_ms(self, cfg: ArchConfig, img_size: int = 224, num_classes: int = 1000) -> float:
        """Sum of ``cfg``'s part timings (no correction).

        Raises:
            LatencyError: some parts are not in the table (calibrate for them first).
        """
        counts = decompose(cfg, img_size, num_classes)
        lost = self.missing(counts)
        if lost:
            shown = "; ".join(str(p) for p in lost[:3])
            more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
            raise LatencyError(
                f"the latency table ({self.describe()}) has no timing for {len(lost)} part(s) "
                f"of this architecture: {shown}{more}; run `dimsearch latency calibrate` for "
                f"its space"
            )
        return sum(n * self.parts[p.key]["ms"] for p, n in counts.items())

    def correction(self, space: str | None = None) -> Correction:
        """The scale and overhead fitted on the whole models held (identity if none).

        With ``space``, the fit uses that space's calibration models when there are at least
        two: families differ in how their parts add up (ResT's many small ops, PiT's few
        large ones), so one fit per family is tighter. Otherwise every model is used.
        """
        own = [m for m in self.models.values() if space and m.get("space") == space]
        chosen = own if len(own) >= 2 else list(self.models.values())
        stamp = (space if len(own) >= 2 else None, len(self.parts), len(self.models))
        if stamp not in self._corrections:
            self._corrections[stamp] = self._fit(chosen)
        return self._corrections[stamp]

    def _fit(self, models: list[dict[str, Any]]) -> Correction:
        xs, ys = [], []
        for m in models:
            try:
                arch = ArchConfig.from_dict(m["arch"])
                xs.append(self.parts_ms(arch, m["img_size"], m["num_classes"]))
            except LatencyError:
                continue
            ys.append(m["ms"])
        scale, overhead = fit_relative(xs, ys)
        return Correction(scale, overhead, len(xs))

    # -- storage -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "identity": self.identity,
            "settings": self.settings.to_dict(),
            "device_name": self.device_name,
            "software": self.software,
            "parts": dict(sorted(self.parts.items())),
            "models": self.models,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> LatencyTable:
        if data.get("format") != TABLE_FORMAT:
            raise LatencyError(
                f"latency table format {data.get('format')!r} is not {TABLE_FORMAT}"
                + (f" ({path})" if path else "")
            )
        return cls(
            settings=LatencySettings.from_dict(data["settings"]),
            device_name=data["device_name"],
            software=dict(data["software"]),
            parts=dict(data.get("parts", {})),
            models=dict(data.get("models", {})),
            path=path,
        )

    def save(self, path: Path | None = None) -> Path:
        """Write the table as JSON (atomically: a reader never sees half a file)."""
        path = path or self.path
        if path is None:
            raise LatencyError("this latency table has no path to save to")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)
        self.path = path
        return path


def default_table_dir() -> Path:
    """``<cache>/latency``: ``$DIMSEARCH_CACHE`` or ``~/.cache/dimsearch``."""
    from dimsearch.data.config import default_cache_dir

    return default_cache_dir() / "latency"


def table_path(table: LatencyTable, root: Path | None = None) -> Path:
    """Where ``table`` is cached under ``root`` (default `default_table_dir`)."""
    return (root or default_table_dir()) / f"{table.key}.json"


def open_table(
    settings: LatencySettings, root: Path | None = None, *, device_name: str | None = None
) -> LatencyTable:
    """The cached table for ``settings`` on this device and software, or a new empty one.

    ``settings.threads`` must be set: the same model is a different figure at another thread
    count, so a table never leaves it open. Imports torch (device name, versions).

    Args:
        settings: how the figures are (to be) taken.
        root: the cache directory (default `default_table_dir`).
        device_name: open the table of this CPU model or GPU name instead of the local
            device's, e.g. on a search driver whose trials run on other machines.
    """
    import torch

    from dimsearch.cost._latency import device_name as local_name
    from dimsearch.cost._latency import software_versions

    if settings.threads is None:
        raise LatencyError("a latency table needs settings.threads (e.g. 1), got None")
    table = LatencyTable(
        settings=settings,
        device_name=device_name or local_name(torch.device(settings.device)),
        software=software_versions(),
    )
    path = table_path(table, root)
    table.path = path
    if path.is_file():
        try:
            cached = LatencyTable.from_dict(json.loads(path.read_text()), path)
        except (OSError, ValueError, KeyError, TypeError):
            return table  # unreadable: start again, it is only a cache
        if cached.identity == table.identity:
            table.parts, table.models = cached.parts, cached.models
    return table


def _arch_key(cfg: ArchConfig, img_size: int, num_classes: int) -> str:
    body = json.dumps(
        [cfg.replace(name="").to_dict(), img_size, num_classes], sort_keys=True
    ).encode()
    return hashlib.blake2b(body, digest_size=8).hexdigest()


@dataclass
class CalibrationReport:
    """What one `calibrate` call did: parts and models measured now versus found cached."""

    parts_needed: int = 0
    parts_measured: int = 0
    models_needed: int = 0
    models_measured: int = 0
    seconds: float = 0.0


def calibrate(
    table: LatencyTable,
    archs: Iterable[ArchConfig] = (),
    *,
    img_size: int = 224,
    num_classes: int = 1000,
    fit_models: Sequence[ArchConfig] = (),
    space: str = "",
    extra_parts: Iterable[Part] = (),
    progress: Callable[[str], None] | None = None,
    save: bool = True,
    max_bytes: int = 2 << 30,
) -> CalibrationReport:
    """Time every part of ``archs`` (and ``extra_parts``) and every ``fit_models`` model
    that ``table`` does not hold yet, then save it.

    Parts are timed alone, round-robin (`time_interleaved`): every round runs each part
    once, so a burst of outside load spreads over all of them. The whole models join the
    same rounds (as many as fit in ``max_bytes`` of weights, `model_groups`), so the
    correction compares parts and models timed under the same conditions. Everything runs
    under the node's measurement lock, so training on this node pauses (at its next epoch
    boundary) until calibration ends.

    Args:
        table: from `open_table`; filled in place.
        archs: architectures whose parts to time (e.g. many samples of a space).
        img_size, num_classes: the resolution and classifier the parts are shaped for.
        fit_models: whole models to time for the correction (a few, say 10).
        space: label stored with the fit models.
        extra_parts: more parts to time, e.g. read from another table's keys.
        progress: called with a line of text per phase.
        save: write the table to its path afterwards.
        max_bytes: weights of the whole models built and timed together at most.
    """
    import torch

    from dimsearch.cost._latency import measuring, time_interleaved
    from dimsearch.cost._part_modules import build_part

    start = time.perf_counter()
    say = progress or (lambda _line: None)
    s = table.settings
    dev = torch.device(s.device)
    wanted: set[Part] = set(extra_parts)
    for cfg in archs:
        wanted.update(decompose(cfg, img_size, num_classes))
    for cfg in fit_models:
        wanted.update(decompose(cfg, img_size, num_classes))
    todo = table.missing(wanted)
    fits = {_arch_key(c, img_size, num_classes): c for c in fit_models}
    fits_todo = {k: c for k, c in fits.items() if k not in table.models}
    report = CalibrationReport(len(wanted), len(todo), len(fits), len(fits_todo))
    say(
        f"{len(wanted)} distinct parts, {len(todo)} to measure; {len(fits)} whole models for "
        f"the correction, {len(fits_todo)} to measure"
    )
    if todo or fits_todo:
        with measuring(s):
            items = list(fits_todo.items())
            groups = model_groups([c for _, c in items], img_size, num_classes, max_bytes)
            for i, idx in enumerate(groups or [[]]):
                # The parts go round-robin with the first group of whole models, so the
                # correction relates parts and models timed under the same conditions.
                parts = todo if i == 0 else []
                chunk = [items[j] for j in idx]
                runs = [build_part(p, s.batch, dev) for p in parts]
                runs += model_runs([c for _, c in chunk], s, img_size, num_classes)
                times = time_interleaved(
                    runs, dev, warmup=s.warmup, rounds=s.repeats, clock=s.clock
                )
                for p, ms in zip(parts, times, strict=False):
                    table.parts[p.key] = _summary(ms)
                for (key, cfg), ms in zip(chunk, times[len(parts) :], strict=True):
                    table.models[key] = {
                        "arch": cfg.to_dict(),
                        "img_size": img_size,
                        "num_classes": num_classes,
                        "space": space,
                        **_summary(ms),
                    }
                del runs
                say(f"measured in {time.perf_counter() - start:.1f} s")
        if save:
            table.save()
    report.seconds = time.perf_counter() - start
    return report


def model_groups(
    cfgs: Sequence[ArchConfig], img_size: int, num_classes: int, max_bytes: int
) -> list[list[int]]:
    """Indices of ``cfgs`` in consecutive groups whose fp32 weights fit in ``max_bytes`` (a
    model larger than that is a group of its own). Timing a whole group round-robin spreads
    each model's passes over the group's whole time, so slow drifts of the machine's load
    average out instead of landing on a few models."""
    from dimsearch.cost._analytic import estimate

    groups: list[list[int]] = []
    used = max_bytes + 1
    for i, cfg in enumerate(cfgs):
        size = 4 * estimate(cfg, img_size, num_classes).params
        if used + size > max_bytes:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += size
    return groups


def time_models(
    cfgs: Sequence[ArchConfig], settings: LatencySettings, img_size: int, num_classes: int
) -> list[list[float]]:
    """Per-pass milliseconds of each whole model, timed round-robin like the parts.

    Call it inside `measuring` (it takes the lock itself otherwise, re-entrantly).
    """
    import torch

    from dimsearch.cost._latency import measuring, time_interleaved

    s = settings
    runs = model_runs(cfgs, s, img_size, num_classes)
    with measuring(s):
        return time_interleaved(
            runs, torch.device(s.device), warmup=s.warmup, rounds=s.repeats, clock=s.clock
        )


def model_runs(
    cfgs: Sequence[ArchConfig], settings: LatencySettings, img_size: int, num_classes: int
) -> list[Callable[[], Any]]:
    """One zero-argument forward pass per config: the built model on a batch of its input."""
    import torch

    from dimsearch.models import build_model

    dev = torch.device(settings.device)
    runs = []
    for cfg in cfgs:
        model = build_model(cfg, num_classes, img_size).to(dev).eval()
        x = torch.randn(settings.batch, cfg.in_chans, img_size, img_size, device=dev)
        runs.append(lambda m=model, x=x: m(x))
    return runs


def _summary(ms: list[float]) -> dict[str, Any]:
    return {"ms": statistics.median(ms), "min_ms": min(ms), "repeats": len(ms)}


def predict_latency(
    cfg: ArchConfig,
    table: LatencyTable,
    img_size: int = 224,
    num_classes: int = 1000,
    *,
    space: str | None = None,
) -> float:
    """Predicted milliseconds per batch of ``cfg`` on ``table``'s device and settings.

    Torch-free and cheap (a dict lookup per part), so it can gate samples before they are
    built. Divide the batch size by it (in seconds) for images/s. ``space`` names the space
    ``cfg`` comes from, to use that space's correction (`LatencyTable.correction`).

    Raises:
        LatencyError: the table lacks some of ``cfg``'s parts (the message names them).
    """
    return table.correction(space)(table.parts_ms(cfg, img_size, num_classes))
