"""Hypervolume of a study's front, and how it grew trial by trial and hour by hour.

The hypervolume is the volume dominated by the front and bounded by a reference point: one
number that rises whenever the search finds a better trade-off, whatever the objectives are.
Objectives are turned into minimisation form first (accuracy is negated), so "dominated"
always means "larger in every coordinate".

Exact and pure numpy: 2-D by a sweep, higher dimensions by slicing along the last objective
(each slab is a (d-1)-dimensional problem). That is O(n^(d-1) log n), plenty for the few
hundred trials of a study and the two to four objectives dimsearch has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from dimsearch.analysis.points import AnalysisError
from dimsearch.search.study import Attr, directions_of, nondominated, number_attr

__all__ = [
    "HypervolumeHistory",
    "hypervolume",
    "hypervolume_history",
    "reference_point",
]

# How far beyond the worst completed value the default reference point sits, as a share of
# each objective's range: far enough that the extreme trials still add volume (a point on the
# reference bound adds none), near enough that the volume is dominated by the front's shape.
REFERENCE_PAD = 0.1


def hypervolume(
    points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]
) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation form).

    Points not strictly better than the reference in every objective add nothing.
    """
    ref = np.asarray(reference, dtype=float)
    p = np.asarray(points, dtype=float).reshape(-1, ref.size)
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    return float(_hv(p[nondominated(p)], ref))


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    d = p.shape[1]
    if d == 1:
        return float(ref[0] - p[:, 0].min())
    if d == 2:
        order = np.argsort(p[:, 0], kind="stable")
        x, y = p[order, 0], np.minimum.accumulate(p[order, 1])
        widths = np.diff(np.append(x, ref[0]))
        return float(np.sum(widths * (ref[1] - y)))
    order = np.argsort(p[:, -1], kind="stable")
    p = p[order]
    z = np.append(p[:, -1], ref[-1])
    total = 0.0
    for i in range(len(p)):
        depth = z[i + 1] - z[i]
        if depth > 0:
            head = p[: i + 1, :-1]
            total += depth * _hv(head[nondominated(head)], ref[:-1])
    return total


def _signs(directions: Sequence[str]) -> np.ndarray:
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def reference_point(
    values: np.ndarray, directions: Sequence[str], *, pad: float = REFERENCE_PAD
) -> np.ndarray:
    """The default reference: each objective's worst completed value, padded outward.

    Args:
        values: completed trials' objective values, one row each, in the study's own units.
        directions: ``minimize``/``maximize`` per objective.
        pad: share of each objective's range (best to worst) to go past the worst; where
            the range is 0, that share of the worst value's magnitude (or ``pad`` itself at 0).

    Returns:
        The reference in the study's own units (accuracy stays a percentage).
    """
    s = _signs(directions)
    v = np.asarray(values, dtype=float) * s
    worst, best = v.max(axis=0), v.min(axis=0)
    span = worst - best
    step = np.where(span > 0, pad * span, np.where(worst != 0, pad * np.abs(worst), pad))
    return (worst + step) * s


@dataclass(frozen=True)
class HypervolumeHistory:
    """The hypervolume after each trial, against trial number and cumulative compute.

    Attributes:
        objectives: objective names, study order.
        directions: their directions.
        reference: the reference point in the objectives' own units.
        reference_source: ``"worst completed + 10% of range"`` or ``"given"``.
        numbers: every trial's number, ascending (all states: every trial cost compute).
        hypervolume: the front's hypervolume once that trial had finished (in the
            minimisation-form units: accuracy-% x GFLOPs x ms for the usual three).
        seconds: cumulative proxy-training seconds up to and including that trial
            (``Attr.SECONDS``; the trial's wall time where that attribute is missing).
    """

    objectives: list[str]
    directions: list[str]
    reference: list[float]
    reference_source: str
    numbers: list[int]
    hypervolume: list[float]
    seconds: list[float]

    @property
    def final(self) -> float:
        return self.hypervolume[-1] if self.hypervolume else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "objectives": self.objectives,
            "directions": self.directions,
            "reference": self.reference,
            "reference_source": self.reference_source,
            "numbers": self.numbers,
            "hypervolume": self.hypervolume,
            "seconds": self.seconds,
        }


def _trial_seconds(t: optuna.trial.FrozenTrial) -> float:
    s = number_attr(t.user_attrs, Attr.SECONDS)
    if s is not None and s >= 0:
        return float(s)
    if t.datetime_start is not None and t.datetime_complete is not None:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return 0.0


def check_reference(reference: Sequence[float], objectives: int) -> None:
    """Refuse a hypervolume reference point that is not one finite number per objective
    (the report checks it before it writes anything)."""
    if len(reference) != objectives or not all(math.isfinite(v) for v in reference):
        raise AnalysisError(
            f"the reference point needs one finite value per objective ({objectives}), "
            f"got {list(reference)}"
        )


def hypervolume_history(
    study: optuna.Study,
    objectives: Sequence[str],
    *,
    reference: Sequence[float] | None = None,
) -> HypervolumeHistory:
    """Hypervolume after every trial (in number order) and the compute spent to get there.

    Trial numbers follow the order trials were started, which is the order the sampler made
    its decisions in; compute time counts PRUNED and FAILED trials too, because the search
    paid for them.

    Args:
        study: the study.
        objectives: names of its objectives (for the record).
        reference: a fixed reference point in the objectives' own units (e.g. ``[0, 3, 50]``
            for accuracy %, GFLOPs, ms); ``None``: `reference_point` of the completed trials.
            Fix it when comparing studies or runs, so the numbers share a scale.
    """
    directions = directions_of(study)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    if reference is not None:
        check_reference(reference, len(directions))
        ref, source = np.asarray(reference, dtype=float), "given"
    elif done:
        ref = reference_point(np.array([t.values for t in done]), directions)
        source = f"worst completed + {REFERENCE_PAD:.0%} of range"
    else:
        ref, source = np.zeros(len(directions)), "none (no completed trial)"
    s = _signs(directions)
    ref_min = ref * s
    front = np.zeros((0, len(directions)))
    hv, numbers, hvs, secs, spent = 0.0, [], [], [], 0.0
    for t in trials:
        spent += _trial_seconds(t)
        if t.state == TrialState.COMPLETE and t.values is not None:
            p = np.asarray(t.values, dtype=float) * s
            covered = bool(np.any(np.all(front <= p, axis=1)))  # adds no volume
            if np.all(p < ref_min) and not covered:
                front = np.vstack([front, p])
                front = front[nondominated(front)]
                hv = float(_hv(front, ref_min))
        numbers.append(t.number)
        hvs.append(hv)
        secs.append(spent)
    return HypervolumeHistory(
        list(objectives), directions, ref.tolist(), source, numbers, hvs, secs
    )
