"""How good the latency predictor is, measured: held-out architectures timed against it.

`sample_archs` draws a space's architectures the way a random search would (Optuna's
`RandomSampler` through the space's own ``sample``), keeping those within its params/GFLOPs
budgets: the ones a search would build. `check_predictor` times held-out draws as whole models
and scores two predictors on them:

* the part table (`predict_latency`);
* GFLOPs alone, ``a * GFLOPs + b`` fitted exactly as the table's correction is (relative least
  squares on the same calibration models of the space): the floor the table has to beat.

Scores: the share within +-10% of the measured figure, Spearman's rank correlation, and the
mean absolute percentage error.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dimsearch.config import ArchConfig
from dimsearch.cost._parts import Part, decompose
from dimsearch.cost._predict import (
    CalibrationReport,
    LatencyTable,
    calibrate,
    fit_relative,
    model_groups,
    time_models,
)
from dimsearch.errors import ArchError, LatencyError

__all__ = [
    "PREDICTORS",
    "CheckResult",
    "Score",
    "check_predictor",
    "sample_archs",
    "score",
    "spearman",
]


def _arch_id(cfg: ArchConfig) -> str:
    body = json.dumps(cfg.replace(name="").to_dict(), sort_keys=True).encode()
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def sample_archs(
    space: Any,
    n: int,
    *,
    seed: int,
    within_budgets: bool = True,
    exclude: Sequence[ArchConfig] = (),
    max_draws: int | None = None,
    partial: bool = False,
) -> tuple[list[ArchConfig], int]:
    """``n`` distinct architectures of ``space`` from a seeded random sampler, and the draws
    it took.

    Draws whose parameters make no valid network are skipped, as a search prunes them; so
    are those over the space's params/GFLOPs budgets when ``within_budgets`` (a search never
    builds them), and those equal to one in ``exclude`` (the calibration models).

    Args:
        space: a `SearchSpace` (anything with ``sample(trial)``, ``check_budgets(cfg)``).
        n: how many to return.
        seed: the sampler's seed; a different seed is a different, independent draw.
        max_draws: give up after this many draws (default ``100 * n + 1000``).
        partial: return what was found by then instead of raising (a small space may hold
            fewer than ``n``).

    Raises:
        LatencyError: fewer than ``n`` distinct valid architectures after ``max_draws``, unless
            ``partial``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    limit = max_draws if max_draws is not None else 100 * n + 1000
    seen = {_arch_id(c) for c in exclude}
    out: list[ArchConfig] = []
    draws = 0
    study = None
    while len(out) < n and draws < limit:
        if draws % 1000 == 0:  # a fresh in-memory study now and then keeps ask() fast
            sampler = optuna.samplers.RandomSampler(seed=seed * 1_000_003 + draws)
            study = optuna.create_study(sampler=sampler)
        draws += 1
        trial = study.ask()
        try:
            cfg = space.sample(trial)
        except ArchError:
            continue
        if within_budgets and space.check_budgets(cfg):
            continue
        key = _arch_id(cfg)
        if key in seen:
            continue
        seen.add(key)
        out.append(cfg)
    if len(out) < n and not partial:
        raise LatencyError(
            f"found {len(out)} distinct architectures within the budgets in {draws} draws, "
            f"not {n}; the space is smaller than asked for"
        )
    return out, draws


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank); nan below two points."""
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else float("nan")


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@dataclass(frozen=True)
class Score:
    """How close predictions are to measurements."""

    within_10: float  # share of |predicted / measured - 1| <= 0.10
    spearman: float
    mape: float  # mean |predicted / measured - 1|
    worst: float  # largest |predicted / measured - 1|


def score(predicted: Sequence[float], measured: Sequence[float]) -> Score:
    errs = [abs(p / m - 1) for p, m in zip(predicted, measured, strict=True)]
    return Score(
        within_10=sum(e <= 0.10 for e in errs) / len(errs),
        spearman=spearman(predicted, measured),
        mape=statistics.fmean(errs),
        worst=max(errs),
    )


@dataclass
class CheckResult:
    """One `check_predictor` run: the figures per architecture and the scores.

    ``predictions`` and ``scores`` are keyed by predictor label (`PREDICTORS`); ``fits`` holds
    each predictor's ``(a, b)`` of ``a * x + b``, x being the part sum or the GFLOPs.
    """

    archs: list[ArchConfig]
    measured_ms: list[float]
    min_ms: list[float]  # fastest pass per model
    spread: list[float]  # (p90 - p10) / median per model
    gflops: list[float]
    predictions: dict[str, list[float]]
    scores: dict[str, Score]
    fits: dict[str, tuple[float, float]]
    calibration_models: int
    draws: int
    missing: CalibrationReport
    measure_seconds: float
    seconds: float


# Predictor labels, in the order they are reported. "stored": the fit made at calibration
# time, as a search would use it; "refit": the same fit on the calibration models re-timed now,
# beside the held-out ones, which takes the machine's drift between sessions out of the score.
PREDICTORS = (
    "part table",
    "part table, refit now",
    "GFLOPs linear",
    "GFLOPs linear, refit now",
)


def check_predictor(
    space: Any,
    table: LatencyTable,
    *,
    n: int = 50,
    seed: int = 1,
    img_size: int | None = None,
    num_classes: int | None = None,
    progress: Callable[[str], None] | None = None,
    max_bytes: int = 2 << 30,
) -> CheckResult:
    """Time ``n`` held-out architectures of ``space`` alone and score predictors on them.

    The held-out draws use ``seed`` (calibration uses another) and exclude the table's
    calibration models. Parts of the held-out models that the table lacks are timed first
    (and reported): calibration for a new shape would do the same. The held-out models and
    this space's calibration models are then timed together, round-robin in groups of at
    most ``max_bytes`` of weights (`model_groups`), under the measurement lock.

    Four predictors are scored against the held-out medians (`PREDICTORS`): the part table
    with its stored correction (fitted at calibration), the part table with the correction
    refitted on the calibration models timed now, and GFLOPs alone (``a * GFLOPs + b``)
    fitted the same two ways. All four use `fit_relative` on the same calibration models:
    this space's, or every model of the table if the space has fewer than two.

    Raises:
        LatencyError: the table holds fewer than 2 whole models of this image size and class
            count to fit on (calibrate first).
    """
    from dimsearch.cost._analytic import estimate

    start = time.perf_counter()
    say = progress or (lambda _line: None)
    img = img_size or space.target_img_size
    classes = num_classes or space.num_classes
    name = getattr(space, "name", None)
    stored = [
        m for m in table.models.values() if m["img_size"] == img and m["num_classes"] == classes
    ]
    own = [m for m in stored if m.get("space") == name]
    fit_models = own if len(own) >= 2 else stored
    if len(fit_models) < 2:
        raise LatencyError(
            f"the latency table holds {len(stored)} whole model(s) at {img} px and {classes} "
            f"classes; the check needs at least 2 to fit on: run `dimsearch latency calibrate`"
        )
    fit_cfgs = [ArchConfig.from_dict(m["arch"]) for m in fit_models]
    archs, draws = sample_archs(
        space, n, seed=seed, exclude=[ArchConfig.from_dict(m["arch"]) for m in stored]
    )
    say(f"{n} held-out architectures in {draws} draws (seed {seed})")
    parts: set[Part] = set()
    for cfg in archs:
        parts.update(decompose(cfg, img, classes))
    missing = calibrate(table, (), img_size=img, num_classes=classes, extra_parts=parts)
    if missing.parts_measured:
        say(f"{missing.parts_measured} parts of them were not in the table: measured now")

    measure_start = time.perf_counter()
    timings = _time_spread(archs, fit_cfgs, table, img, classes, max_bytes, say)
    measure_seconds = time.perf_counter() - measure_start
    held, now = timings[: len(archs)], timings[len(archs) :]
    measured = [statistics.median(t) for t in held]
    fit_now = [statistics.median(t) for t in now]

    def gf(cfg: ArchConfig) -> float:
        return estimate(cfg, img, classes).gflops

    def parts_ms(cfg: ArchConfig) -> float:
        return table.parts_ms(cfg, img, classes)

    c = table.correction(name if len(own) >= 2 else None)
    fit_parts = [parts_ms(f) for f in fit_cfgs]
    fit_gf = [gf(f) for f in fit_cfgs]
    fits = {
        "part table": (c.scale, c.overhead_ms),
        "part table, refit now": fit_relative(fit_parts, fit_now),
        "GFLOPs linear": fit_relative(fit_gf, [m["ms"] for m in fit_models]),
        "GFLOPs linear, refit now": fit_relative(fit_gf, fit_now),
    }

    xs = {"part": [parts_ms(a) for a in archs], "GFLOPs": [gf(a) for a in archs]}
    predictions = {
        label: [a * x + b for x in xs[label.split()[0]]] for label, (a, b) in fits.items()
    }
    return CheckResult(
        archs=archs,
        measured_ms=measured,
        min_ms=[min(t) for t in held],
        spread=[_spread(t) for t in held],
        gflops=xs["GFLOPs"],
        predictions=predictions,
        scores={label: score(p, measured) for label, p in predictions.items()},
        fits=fits,
        calibration_models=len(fit_models),
        draws=draws,
        missing=missing,
        measure_seconds=measure_seconds,
        seconds=time.perf_counter() - start,
    )


def _spread(t: list[float]) -> float:
    med = statistics.median(t)
    if len(t) < 2 or med <= 0:
        return 0.0
    q = statistics.quantiles(t, n=10)
    return (q[-1] - q[0]) / med


def _time_spread(
    archs: list[ArchConfig],
    extra: list[ArchConfig],
    table: LatencyTable,
    img: int,
    classes: int,
    max_bytes: int,
    say: Callable[[str], None],
) -> list[list[float]]:
    """Per-pass times of ``archs + extra`` (in that order), with ``extra`` spread evenly over
    the groups so each group's conditions reach the calibration models too."""
    order = list(range(len(archs)))
    step = max(1, len(archs) // max(1, len(extra)))
    for j in range(len(extra)):
        order.insert(min(len(order), j * (step + 1)), len(archs) + j)
    everything = archs + extra
    out: dict[int, list[float]] = {}
    groups = model_groups([everything[k] for k in order], img, classes, max_bytes)
    for idx in groups:
        chunk = [order[i] for i in idx]
        ms = time_models([everything[k] for k in chunk], table.settings, img, classes)
        out.update(zip(chunk, ms, strict=True))
        say(f"measured {len(out)}/{len(order)} models")
    return [out[k] for k in range(len(everything))]
