"""What an export reads from a trial, checked before any of it reaches generated code.

A study is data written by other programs (and files can be edited by hand), so nothing in it
is trusted: the architecture is rebuilt through `ArchConfig.from_dict` (unknown kinds, wrong
types and broken rules are refused there), the model it describes must stay within
`SIZE_LIMITS` at the recorded sizes, every number goes through ``int()``/``float()`` checks,
and free text (study, seed and device names) is reduced to a safe character set before the
code generator sees it. The generator only ever handles a `TrialRecord`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from dimsearch._values import is_int
from dimsearch.config import ArchConfig
from dimsearch.cost import estimate
from dimsearch.errors import ArchError, DimsearchError
from dimsearch.search.budgets import Budgets
from dimsearch.search.study import (
    OBJECTIVES,
    Attr,
    RepeatStats,
    objectives_of,
    repeat_stats,
)

__all__ = [
    "SIZE_LIMITS",
    "ExportError",
    "ProxyWeights",
    "TrialRecord",
    "proxy_weights",
    "safe_text",
    "trial_record",
]

DEFAULT_IMG_SIZE = 224
DEFAULT_NUM_CLASSES = 1000

# what may appear of a study's free text in a generated docstring: enough for names like
# "pit_ti", "cuda:0" or "Intel(R) Xeon(R) CPU @ 2.20GHz"; anything else becomes "?"
_UNSAFE_TEXT = re.compile(r"[^A-Za-z0-9 _.,:;()@+/=#%-]")

# The largest model an export writes. An exported file builds its model (and runs it once) at
# the recorded sizes, so a study edited to ask for a width of 10**9 would allocate terabytes
# when the file runs; the analytic cost model (no torch, nothing built) refuses it here first.
# Far above anything a proxy search explores (PiT-B: 73.8 M params, 12.4 GFLOPs at 224 px),
# below what fits a large machine: 10 G params are 40 GB of float32 weights.
SIZE_LIMITS = Budgets(max_gflops=10_000.0, max_params_m=10_000.0)


class ExportError(DimsearchError):
    """A trial cannot be exported as asked (no such trial, no weights, bad records, ...)."""


def safe_text(value: Any, limit: int = 80) -> str:
    """``value`` as printable text with only harmless characters, at most ``limit`` long."""
    text = _UNSAFE_TEXT.sub("?", str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ProxyWeights:
    """Where a trial's proxy-trained state dict is and the model it fits.

    Attributes:
        path: the state dict file, resolved to an existing path.
        num_classes: classifier width of the proxy task.
        in_chans: input channels of the proxy data.
        img_size: the proxy training resolution (sizes a learned position map).
    """

    path: Path
    num_classes: int
    in_chans: int
    img_size: int


@dataclass(frozen=True)
class TrialRecord:
    """One trial, validated: everything the code generator may write into a file.

    Attributes:
        study: the study name, `safe_text`-filtered (identifiers are derived from it again by
            the generator's stricter filter).
        number: the trial number.
        state: ``COMPLETE``, ``PRUNED``, ...
        arch: the architecture, rebuilt and validated.
        seed: zoo name of a seeded trial (filtered), else ``None``.
        objectives: the trial's objective values by name (only known names, finite floats).
        params: parameter count at ``img_size`` and ``num_classes``, if recorded.
        gflops: multiply-adds / 1e9 at ``img_size``, if recorded.
        latency_ms: median latency, if recorded.
        latency_device: how that latency was measured (filtered text), if recorded.
        img_size: the resolution the costs refer to (the study's target size).
        num_classes: the classifier width the costs refer to.
        weights_attr: the raw `Attr.WEIGHTS` value (a path), if the trial has one.
        accuracy_runs: the proxy accuracy of each training seed when the architecture was
            trained more than once (``search.repeats``); ``objectives["accuracy"]`` is then
            their mean.
    """

    study: str
    number: int
    state: str
    arch: ArchConfig
    seed: str | None
    objectives: dict[str, float]
    params: int | None
    gflops: float | None
    latency_ms: float | None
    latency_device: str | None
    img_size: int
    num_classes: int
    weights_attr: str | None = None
    accuracy_runs: tuple[float, ...] = ()


def _number(trial: int, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExportError(f"trial {trial}: user attr {key!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        return None
    return value


def _count(trial: int, key: str, value: Any, default: int | None = None) -> int | None:
    number = _number(trial, key, value)
    if number is None:
        return default
    if not number.is_integer() or number < 0:
        raise ExportError(
            f"trial {trial}: user attr {key!r} must be a non-negative integer, got {value!r}"
        )
    return int(number)


def _arch(study: str, trial: FrozenTrial) -> ArchConfig:
    data = trial.user_attrs.get(Attr.ARCH)
    if data is None:
        reason = trial.user_attrs.get(Attr.REASON)
        why = f" ({safe_text(reason, 200)})" if reason else ""
        raise ExportError(
            f"trial {trial.number} of study {study!r} has no architecture recorded "
            f"(state {trial.state.name}{why})"
        )
    try:
        return ArchConfig.from_dict(data)
    except ArchError as err:
        raise ExportError(
            f"trial {trial.number} of study {study!r} records an invalid architecture, "
            f"refusing to export it: {err}"
        ) from None


def _check_size(
    study: str, number: int, cfg: ArchConfig, img_size: int, num_classes: int, what: str
) -> None:
    """Refuse an architecture whose model would be absurdly large at the sizes a file uses."""
    try:
        est = estimate(cfg, img_size, num_classes)
    except ArchError as err:
        raise ExportError(
            f"trial {number} of study {study!r}: its architecture cannot run at {img_size} px "
            f"({what}): {err}"
        ) from None
    over = SIZE_LIMITS.violations({"gflops": est.gflops, "params_m": est.params / 1e6})
    if over:
        raise ExportError(
            f"trial {number} of study {study!r} records an architecture too large to export "
            f"({'; '.join(over)} at {img_size} px, {num_classes} classes, {what}); "
            f"refusing it (a damaged or edited study?)"
        )


def _space_int(space: Any, key: str, default: int) -> int:
    value = space.get(key) if isinstance(space, dict) else None
    if value is None:
        return default
    if not is_int(value) or value < 1:
        raise ExportError(f"study attr {Attr.SPACE}.{key} must be a positive integer: {value!r}")
    return value


def _latency_device(trial: FrozenTrial) -> str | None:
    info = trial.user_attrs.get(Attr.LATENCY)
    if not isinstance(info, dict):
        return None
    parts = [safe_text(info["device"], 20)] if info.get("device") else []
    if info.get("device_name"):
        parts.append(safe_text(info["device_name"], 60))
    batch = info.get("batch_size")
    if is_int(batch):
        parts.append(f"batch {batch}")
    threads = info.get("num_threads")
    if is_int(threads):
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    return ", ".join(parts) or None


def trial_record(
    study: optuna.Study,
    trial: FrozenTrial,
    repeats: dict[int, RepeatStats] | None = None,
) -> TrialRecord:
    """Read and validate what the exporter needs from ``trial`` of ``study``.

    ``repeats`` is `repeat_stats(study)` when the caller exports several trials (one read of
    the study's trials instead of one per trial); None reads it here.

    Raises:
        ExportError: the trial has no architecture, or one that breaks a rule (a tampered
            ``arch`` attr ends here, never in a file), or one whose model would be larger
            than `SIZE_LIMITS` at the study's sizes, or a cost attr that is not a number.
    """
    name = study.study_name
    number = trial.number
    arch = _arch(name, trial)
    ua = trial.user_attrs
    named = objectives_of(study)  # each read of study attrs is a storage query
    objectives: dict[str, float] = {}
    if trial.values is not None:
        # objectives we know how to label; others in a study are left out of the docstring
        for key, value in zip(named.names, trial.values, strict=True):
            if key in OBJECTIVES:
                checked = _number(number, key, value)
                if checked is not None:
                    objectives[key] = checked
    runs: tuple[float, ...] = ()
    stats = (repeat_stats(study) if repeats is None else repeats).get(number)
    if stats is not None and len(stats.runs) > 1 and named.accuracy is not None:
        i = named.accuracy
        runs = tuple(
            v for v in (_number(number, "accuracy", r[i]) for r in stats.values) if v is not None
        )
        if "accuracy" in objectives and runs:
            objectives["accuracy"] = sum(runs) / len(runs)
    seed = ua.get(Attr.SEED)
    space = study.user_attrs.get(Attr.SPACE)  # each read of study attrs is a storage query
    weights = ua.get(Attr.WEIGHTS)
    if weights is not None and not isinstance(weights, str):
        raise ExportError(f"trial {number}: user attr {Attr.WEIGHTS!r} must be a path string")
    record = TrialRecord(
        study=safe_text(name),
        number=number,
        state=trial.state.name,
        arch=arch,
        seed=safe_text(seed) if seed else None,
        objectives=objectives,
        params=_count(number, Attr.PARAMS, ua.get(Attr.PARAMS)),
        gflops=_number(number, Attr.GFLOPS, ua.get(Attr.GFLOPS)),
        latency_ms=_number(number, Attr.LATENCY_MS, ua.get(Attr.LATENCY_MS)),
        latency_device=_latency_device(trial),
        img_size=_count(number, Attr.TARGET_IMG, ua.get(Attr.TARGET_IMG))
        or _space_int(space, "target_img_size", DEFAULT_IMG_SIZE),
        num_classes=_space_int(space, "num_classes", DEFAULT_NUM_CLASSES),
        weights_attr=weights,
        accuracy_runs=runs,
    )
    _check_size(name, number, arch, record.img_size, record.num_classes, "the study's sizes")
    return record


def proxy_weights(
    study: optuna.Study, trial: FrozenTrial, record: TrialRecord, search: list[Path]
) -> ProxyWeights:
    """Locate ``trial``'s proxy-trained weights and the proxy model they fit.

    A relative `Attr.WEIGHTS` path is looked up in each of ``search`` in turn (the working
    directory, then the study file's folder).

    Raises:
        ExportError: the trial has no weights recorded, or the file is missing, or the
            proxy-sized model they fit would be larger than `SIZE_LIMITS`.
    """
    if not record.weights_attr:
        raise ExportError(
            f"trial {record.number} of study {study.study_name!r} has no proxy-trained weights "
            f"(user attr {Attr.WEIGHTS!r}; only COMPLETE trials of a search that saves weights "
            f"have them); export without --weights"
        )
    raw = Path(record.weights_attr)
    candidates = [raw] if raw.is_absolute() else [base / raw for base in search]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = ", ".join(str(p) for p in candidates)
        raise ExportError(f"trial {record.number}: weights file not found (looked at {where})")
    ua = trial.user_attrs
    n = record.number
    proxy = ProxyWeights(
        path=path,
        num_classes=_count(n, Attr.PROXY_CLASSES, ua.get(Attr.PROXY_CLASSES), record.num_classes),
        in_chans=_count(n, Attr.PROXY_CHANNELS, ua.get(Attr.PROXY_CHANNELS))
        or record.arch.in_chans,
        img_size=_count(n, Attr.PROXY_IMG, ua.get(Attr.PROXY_IMG)) or record.img_size,
    )
    # the export itself builds this proxy-sized model to check the weights fit it
    cfg = record.arch.replace(in_chans=proxy.in_chans)
    _check_size(study.study_name, n, cfg, proxy.img_size, proxy.num_classes, "the proxy weights")
    return proxy
