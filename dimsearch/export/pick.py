"""Which trials to export: one by number, or chosen by a rule over the study's Pareto front.

Rules (`PICK_RULES`):

* ``accuracy``: the most accurate front trial that meets the constraints (ties: fewer GFLOPs,
  then the lower trial number).
* ``knee``: the front's knee in the accuracy / GFLOPs plane. The front trials that meet the
  constraints are reduced to those no other beats on both accuracy and GFLOPs (a third
  objective such as latency can leave points on the study's front that this plane
  dominates), both axes are min-max normalised, and the knee is the point furthest above the
  chord from the cheapest point to the most accurate one, i.e. the largest
  ``accuracy_norm - gflops_norm``: where extra GFLOPs stop buying accuracy at a better than
  average rate. Ties go to the lower trial number; with fewer than three points there is no
  interior point and the most accurate one is taken.

Constraints (`Budgets`, the type of a space's ``budgets:``) read the trial's recorded cost
attrs (`Attr.GFLOPS`, `Attr.LATENCY_MS`, `Attr.PARAMS`), measured at the study's target
resolution; a trial that lacks a constrained figure is left out rather than assumed to fit.
The rules consider the study's front only, as `dimsearch show` prints it.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial

from dimsearch.export._record import ExportError
from dimsearch.search.budgets import Budgets
from dimsearch.search.study import (
    Attr,
    Objectives,
    front_trials,
    nondominated,
    number_attr,
    objectives_of,
)

__all__ = ["PICK_RULES", "Constraints", "knee_index", "select_trials"]

PICK_RULES = ("accuracy", "knee")


# Export's limits are the space's budgets: one type, one rule (`Budgets.violations`).
Constraints = Budgets

# limit -> the `dimsearch export` option that sets it, for messages
_OPTIONS = {
    "max_gflops": "--max-gflops",
    "max_latency_ms": "--max-latency-ms",
    "max_params_m": "--max-params",
}


def _figures(trial: FrozenTrial) -> dict[str, float | None]:
    """The trial's recorded cost figures, by `Budgets` figure name (None: not a number)."""
    ua = trial.user_attrs
    params = number_attr(ua, Attr.PARAMS)
    return {
        "gflops": number_attr(ua, Attr.GFLOPS),
        "latency_ms": number_attr(ua, Attr.LATENCY_MS),
        "params_m": None if params is None else params * 1e-6,
    }


def _admits(limits: Budgets, trial: FrozenTrial) -> bool:
    """Whether ``trial``'s recorded costs are within every limit (a missing one is not)."""
    return not limits.violations(_figures(trial))


def _describe(limits: Budgets) -> str:
    """The limits as the CLI options that set them, for messages."""
    return " ".join(
        f"{option} {getattr(limits, key):g}"
        for key, option in _OPTIONS.items()
        if getattr(limits, key) is not None
    )


def knee_index(points: Sequence[tuple[float, float]]) -> int:
    """Index of the knee of ``(gflops, accuracy)`` points (see the module docstring).

    Only points that no other point beats on both axes can be the knee; among equal points
    the first wins, so the result depends on the order only through ties.

    Raises:
        ExportError: if ``points`` is empty.
    """
    if not points:
        raise ExportError("no points to take a knee of")
    on = nondominated([(c, -a) for c, a in points])
    front = [i for i in range(len(points)) if on[i]]
    # identical points: keep the first. Distinct non-dominated points differ on both axes,
    # so with two or more of them neither normalisation below divides by zero.
    distinct: dict[tuple[float, float], int] = {}
    for i in front:
        distinct.setdefault(points[i], i)
    front = sorted(distinct.values())
    if len(front) < 3:
        return max(front, key=lambda i: (points[i][1], -points[i][0], -i))
    costs = [points[i][0] for i in front]
    accs = [points[i][1] for i in front]
    c0, c1, a0, a1 = min(costs), max(costs), min(accs), max(accs)

    def lift(i: int) -> float:
        # on a 2-D front the extremes normalise to (0, 0) and (1, 1): the chord is y = x
        return (points[i][1] - a0) / (a1 - a0) - (points[i][0] - c0) / (c1 - c0)

    return max(front, key=lambda i: (lift(i), -i))


def _accuracy_of(study: optuna.Study, objectives: Objectives) -> int:
    if objectives.accuracy is None:
        raise ExportError(
            f"study {study.study_name!r} has no 'accuracy' objective "
            f"(objectives: {objectives.names}); pick a trial with --trial"
        )
    return objectives.accuracy


def _gflops_of(names: list[str], trial: FrozenTrial) -> float | None:
    if "gflops" in names:
        return trial.values[names.index("gflops")]
    value = number_attr(trial.user_attrs, Attr.GFLOPS)
    return None if value is None else float(value)


def _fmt(trial: FrozenTrial, key: str, scale: float) -> str:
    value = number_attr(trial.user_attrs, key)
    if value is None:
        return "?"
    return f"{value * scale:.3g}"


def _front(study: optuna.Study, constraints: Budgets) -> list[FrozenTrial]:
    front = front_trials(study)
    if not front:
        raise ExportError(f"study {study.study_name!r} has no COMPLETE trials, so no front yet")
    kept = sorted((t for t in front if _admits(constraints, t)), key=lambda t: t.number)
    if not kept:
        figures = ", ".join(
            f"#{t.number}: {_fmt(t, Attr.GFLOPS, 1.0)} GFLOPs, {_fmt(t, Attr.LATENCY_MS, 1.0)} ms, "
            f"{_fmt(t, Attr.PARAMS, 1e-6)} M params"
            for t in sorted(front, key=lambda t: t.number)
        )
        raise ExportError(
            f"no Pareto-front trial of study {study.study_name!r} meets "
            f"{_describe(constraints)} (front: {figures})"
        )
    return kept


def _pick(study: optuna.Study, rule: str, constraints: Budgets) -> FrozenTrial:
    if rule not in PICK_RULES:
        raise ExportError(f"--pick must be one of {list(PICK_RULES)}, got {rule!r}")
    objectives = objectives_of(study)  # one read of the study's attrs, not one per trial
    names = objectives.names
    acc = _accuracy_of(study, objectives)
    front = _front(study, constraints)
    if rule == "accuracy":

        def rank(t: FrozenTrial) -> tuple[float, float, int]:
            gflops = _gflops_of(names, t)
            return (t.values[acc], -(gflops if gflops is not None else float("inf")), -t.number)

        return max(front, key=rank)
    points = []
    for t in front:
        gflops = _gflops_of(names, t)
        if gflops is None:
            raise ExportError(f"trial {t.number} has no GFLOPs recorded; cannot place it")
        points.append((gflops, t.values[acc]))
    return front[knee_index(points)]


def select_trials(
    study: optuna.Study,
    *,
    trial: int | None = None,
    pick: str | None = None,
    pareto: bool = False,
    constraints: Budgets | None = None,
) -> list[FrozenTrial]:
    """The trials an export asks for: exactly one of ``trial``, ``pick`` or ``pareto``.

    Args:
        study: the study to read.
        trial: a trial number, any state, as long as it recorded an architecture.
        pick: a rule from `PICK_RULES` applied to the front.
        pareto: every front trial (that meets the constraints), in trial-number order.
        constraints: limits for ``pick`` and ``pareto``; not allowed with ``trial``.

    Raises:
        ExportError: none or several ways to choose, an unknown rule or trial number, or no
            front trial meeting the constraints.
    """
    constraints = constraints or Budgets()
    chosen = [
        name
        for name, on in (("--trial", trial is not None), ("--pick", pick), ("--pareto", pareto))
        if on
    ]
    if len(chosen) != 1:
        got = f"got {' and '.join(chosen)}" if chosen else "got none"
        raise ExportError(f"choose exactly one of --trial N, --pick RULE or --pareto ({got})")
    if trial is not None:
        if constraints.active:
            raise ExportError("constraints (--max-*) apply to --pick and --pareto, not --trial")
        trials = study.get_trials(deepcopy=False)
        match = [t for t in trials if t.number == trial]
        if not match:
            have = f"trials 0..{len(trials) - 1}" if trials else "no trials"
            raise ExportError(f"study {study.study_name!r} has no trial {trial} ({have})")
        return match
    if pick:
        return [_pick(study, pick, constraints)]
    return _front(study, constraints)
