"""A study's COMPLETE trials as arrays: what the design-space statistics are computed on.

Error = 100 - proxy accuracy (%) of COMPLETE trials; FLOPs = the ``gflops`` user attribute (at
the target resolution). PRUNED trials are left out: their accuracy is from fewer epochs (or
none at all, for budget rejections), so including them would mix two training budgets in one
distribution; `DesignPoints.excluded` counts them, and FAIL and RUNNING trials, by state.

Besides each trial's Optuna params, a few values are derived from the stored architecture so
the statistics can ask about them too: total ``depth`` and each stage's width ``s{i}.width``
(heads x head dim).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from dimsearch import zoo
from dimsearch.analysis._describe import arch_of
from dimsearch.config import ArchConfig
from dimsearch.errors import DimsearchError
from dimsearch.search.sample import SampleTable
from dimsearch.search.study import SAMPLE_TAG, Attr, number_attr, objectives_of

__all__ = [
    "TRIALS_NOTE",
    "AnalysisError",
    "DesignPoints",
    "accuracy_index",
    "choice_kinds",
    "design_points",
    "points_of",
    "sample_points",
    "source_note",
    "study_points",
]

# What every EDF drawn from a search says about itself: TPE concentrates its trials where it
# found good models and the early stopper removes the bad ones before the last epoch, so the
# EDF of a search's COMPLETE trials is shifted left of the space's and says little about it.
TRIALS_NOTE = (
    "drawn from the optimizer's trials (TPE-biased, early-stopped excluded): not a uniform "
    "sample; use `dimsearch sample`"
)


class AnalysisError(DimsearchError):
    """The statistics asked for cannot be computed from these trials (the message says why)."""


# -- trials to points ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DesignPoints:
    """The COMPLETE trials of a study as arrays, ready for the statistics.

    Attributes:
        numbers: trial numbers.
        errors: 100 - accuracy (%).
        gflops: ``Attr.GFLOPS``.
        values: per trial, its Optuna params plus derived quantities from the stored
            architecture (``depth``: total blocks; ``s{i}.width``: stage width, i.e. heads x
            head dim), where the params do not already name them.
        labels: per trial, the zoo label of a seed (``PiT-Ti``) or ``""``.
        excluded: trials left out, by reason (``pruned``, ``fail``, ``running``, ``no gflops``).
        params: parameter counts (NaN where a trial recorded none), or ``None``.
        source: ``sample`` (one point per architecture of a design-space sample, `sample_points`)
            or ``trials`` (an optimizer's COMPLETE trials, `design_points`): only a sample is
            an unbiased draw from the space; `source_note` says so.
    """

    numbers: np.ndarray
    errors: np.ndarray
    gflops: np.ndarray
    values: list[dict[str, Any]]
    labels: list[str]
    excluded: dict[str, int] = field(default_factory=dict)
    params: np.ndarray | None = None
    source: str = "trials"

    def __len__(self) -> int:
        return int(self.numbers.size)

    @property
    def is_sample(self) -> bool:
        return self.source == "sample"

    def subset(self, mask: np.ndarray) -> DesignPoints:
        keep = np.flatnonzero(mask)
        return DesignPoints(
            self.numbers[keep],
            self.errors[keep],
            self.gflops[keep],
            [self.values[i] for i in keep],
            [self.labels[i] for i in keep],
            dict(self.excluded),
            None if self.params is None else self.params[keep],
            self.source,
        )


def _derived(cfg: ArchConfig | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    out: dict[str, Any] = {"depth": cfg.depth}
    for i, s in enumerate(cfg.stages, 1):
        out[f"s{i}.width"] = s.dim
    return out


def _points(rows: list[tuple[Any, ...]], excluded: dict[str, int], source: str) -> DesignPoints:
    """`DesignPoints` from one row per point: (number, error, gflops, params, values, label);
    both sources (`design_points`, `sample_points`) build theirs here."""
    numbers, errors, flops, params, values, labels = zip(*rows, strict=True) if rows else ([],) * 6
    return DesignPoints(
        np.asarray(numbers, dtype=int),
        np.asarray(errors, dtype=float),
        np.asarray(flops, dtype=float),
        list(values),
        list(labels),
        excluded,
        np.asarray(params, dtype=float),
        source,
    )


def design_points(trials: Sequence[FrozenTrial], *, accuracy_index: int = 0) -> DesignPoints:
    """COMPLETE trials with an accuracy and a FLOPs figure, as `DesignPoints`.

    Args:
        trials: a study's trials (any states; only COMPLETE ones are kept, see the module
            docstring for why PRUNED trials are not).
        accuracy_index: position of ``accuracy`` among the study's objectives.
    """
    rows: list[tuple[Any, ...]] = []
    excluded: dict[str, int] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or t.values is None:
            key = t.state.name.lower()
            excluded[key] = excluded.get(key, 0) + 1
            continue
        g = number_attr(t.user_attrs, Attr.GFLOPS)
        acc = t.values[accuracy_index]
        if g is None or not g > 0 or acc is None or not math.isfinite(acc):
            excluded["no gflops"] = excluded.get("no gflops", 0) + 1
            continue
        p = number_attr(t.user_attrs, Attr.PARAMS)
        rows.append(
            (
                t.number,
                100.0 - float(acc),
                float(g),
                float(p) if p is not None and p > 0 else math.nan,
                {**_derived(arch_of(t.user_attrs)), **t.params},
                zoo.label(t.user_attrs.get(Attr.SEED)),
            )
        )
    return _points(rows, excluded, "trials")


def sample_points(table: SampleTable) -> DesignPoints:
    """One point per architecture of a design-space sample (`SampleTable`).

    An architecture trained with several seeds (a repeat) is one model of the space, so it
    counts once, at the mean of its runs' final errors (error = 100 - accuracy at the last
    epoch); counting each run would give the repeated tenth of the sample ten times the say.
    Architectures without a FLOPs figure are counted in ``excluded`` (``no gflops``).
    """
    rows: list[tuple[Any, ...]] = []
    excluded = dict(table.excluded)
    for runs in table.groups():
        first = runs[0]
        if first.gflops is None or not first.gflops > 0:
            excluded["no gflops"] = excluded.get("no gflops", 0) + 1
            continue
        try:
            cfg = ArchConfig.from_dict(first.arch)
        except DimsearchError:
            cfg = None
        rows.append(
            (
                first.number,
                100.0 - float(np.mean([r.accuracy for r in runs])),
                float(first.gflops),
                float(first.params) if first.params else math.nan,
                {**_derived(cfg), **first.optuna_params},
                zoo.label(first.seed),
            )
        )
    return _points(rows, excluded, "sample")


def source_note(points: DesignPoints) -> str:
    """What the points are a draw of, in one line (the warning when they are trials)."""
    if points.is_sample:
        return (
            f"drawn from a design-space sample: {len(points)} architectures, each trained the "
            f"full budget (mean over repeats)"
        )
    return TRIALS_NOTE


def points_of(source: optuna.Study | SampleTable) -> DesignPoints:
    """The design points of a sample table, a sample study (tagged `SAMPLE_TAG` by
    `dimsearch sample`) or, failing both, a search's COMPLETE trials (see `TRIALS_NOTE`)."""
    if isinstance(source, SampleTable):
        return sample_points(source)
    if source.user_attrs.get(SAMPLE_TAG) is not None:
        return sample_points(SampleTable.from_study(source))
    return study_points(source)


def _param_order(name: str) -> tuple[int, str, int]:
    """Global choices first (``stages``, ``depth``, ``heads``), then per-stage ones grouped by
    key and ordered by stage (``s1.depth``, ``s2.depth``, ..., ``s2.head_mult``, ...)."""
    stage, dot, key = name.partition(".")
    if dot and stage[:1] == "s" and stage[1:].isdigit():
        return (1, key, int(stage[1:]))
    return (0, name, 0)


def choice_kinds(points: DesignPoints, *, min_values: int = 2) -> tuple[list[str], list[str]]:
    """(categorical, numeric) names worth analysing: at least ``min_values`` distinct values.

    Numeric means every value is an int or float (bools are categorical), so ``heads`` (an
    Optuna categorical over 1..4) gets a trend and ``pool`` gets EDFs.
    """
    seen: dict[str, set[Any]] = {}
    for v in points.values:
        for k, x in v.items():
            seen.setdefault(k, set()).add(x)
    categorical, numeric = [], []
    for name in sorted(seen, key=_param_order):
        vals = seen[name]
        if len(vals) < min_values:
            continue
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            numeric.append(name)
        else:
            categorical.append(name)
    return categorical, numeric


# -- studies -------------------------------------------------------------------------------------


def accuracy_index(study: optuna.Study) -> int:
    """Where ``accuracy`` sits among the study's objectives (`Objectives.accuracy`: by name,
    else the first maximised objective); a study without one cannot be analysed for error.
    """
    objectives = objectives_of(study)
    if objectives.accuracy is None:
        raise AnalysisError(
            f"study {study.study_name!r} has no accuracy objective (objectives "
            f"{objectives.names}, all minimised); error statistics need one"
        )
    return objectives.accuracy


def study_points(study: optuna.Study) -> DesignPoints:
    """`design_points` of a study's trials, accuracy found by `accuracy_index`."""
    return design_points(study.get_trials(deepcopy=False), accuracy_index=accuracy_index(study))
