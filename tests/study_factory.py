"""Small real studies for the analysis and dashboard tests, with no training.

Architectures are real: sampled from a shipped space (random sampler, fixed seed) plus the
space's zoo seeds, costed with `dimsearch.cost.estimate` at 224 px, and recorded with the same
user attributes and states a search writes (COMPLETE with values, PRUNED over budget or
invalid or stopped early, FAIL with a reason). Only the accuracy and the latency are made up,
by deterministic formulas of the architecture, so every figure in a test is reproducible.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from dimsearch import zoo
from dimsearch.cost import estimate
from dimsearch.errors import ArchError
from dimsearch.search import load_space
from dimsearch.search.study import Attr

OBJECTIVES = ["accuracy", "gflops", "latency_ms"]  # what spaces/pit.yaml names
EPOCHS = 4

# made-up but plausible: bigger is better with diminishing returns, some choices help
_POS_BONUS = {"le": 2.0, "pa": 3.0, "gl": 1.0, "none": 0.0}
_POOL_BONUS = {"dwconv": 1.0, "avg": 0.0, "max": -1.0, "conv": 1.5}


def accuracy_of(cfg) -> float:
    """A deterministic proxy accuracy (%) for an architecture."""
    g = estimate(cfg, 224).gflops
    acc = 52.0 + 9.0 * math.log2(1.0 + 4.0 * g)
    acc += _POS_BONUS[cfg.stages[0].pos]
    acc += _POOL_BONUS[cfg.transitions[0].kind] if cfg.transitions else 0.0
    acc -= 0.4 * abs(cfg.stages[0].depth - 2)
    return round(min(acc, 95.0), 3)


def latency_of(cfg) -> float:
    """A deterministic latency (ms): linear in FLOPs plus a per-block overhead."""
    return round(0.8 + 2.5 * estimate(cfg, 224).gflops + 0.12 * cfg.depth, 4)


SPACES = Path(__file__).resolve().parents[1] / "spaces"


def new_study(path: Path, space_file: str, name: str | None = None) -> tuple[optuna.Study, Any]:
    """An empty sqlite study at ``path`` for ``spaces/<space_file>``, with the user attrs a
    search stores (objective names, the space); returns it and the loaded space."""
    space = load_space(SPACES / space_file)
    study = optuna.create_study(
        study_name=name or space.name,
        storage=f"sqlite:///{path}",
        directions=space.directions,
    )
    study.set_user_attr(Attr.OBJECTIVES, list(space.objectives))
    study.set_user_attr(Attr.SPACE, space.to_dict())
    return study, space


def make_study(
    path: Path,
    space_file: str = "pit.yaml",
    *,
    samples: int = 24,
    seed: int = 0,
    name: str | None = None,
) -> optuna.Study:
    """A sqlite study at ``path`` with the space's seeds and ``samples`` random samples.

    Every 9th sample fails (a recorded crash) and every 7th is stopped early (PRUNED with a
    curve), besides those the space itself rejects (invalid or over budget).
    """
    study, space = new_study(path, space_file, name)
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for seed_name in space.seeds:
        scratch.enqueue_trial(
            space.params_of(zoo.get(seed_name)), user_attrs={Attr.SEED: seed_name}
        )
    for k in range(len(space.seeds) + samples):
        trial = scratch.ask()
        seed_name = trial.user_attrs.get(Attr.SEED)
        attrs = {Attr.EPOCHS_BUDGET: EPOCHS, Attr.TARGET_IMG: 224}
        if seed_name:
            attrs[Attr.SEED] = seed_name
        try:
            cfg = space.sample(trial)
        except ArchError as err:
            cfg, attrs[Attr.REASON] = None, str(err)
        scratch.tell(trial, state=TrialState.PRUNED)  # the scratch study only records params
        sampled = scratch.trials[trial.number]
        if cfg is None:
            _add(study, sampled, TrialState.PRUNED, None, attrs)
            continue
        est = estimate(cfg, 224)
        attrs.update({Attr.ARCH: cfg.to_dict(), Attr.PARAMS: est.params, Attr.GFLOPS: est.gflops})
        over = space.check_budgets(cfg)
        if over:
            _add(study, sampled, TrialState.PRUNED, None, {**attrs, Attr.REASON: over})
            continue
        acc, lat = accuracy_of(cfg), latency_of(cfg)
        curve = [round(acc - 6.0 + 2.0 * e, 3) for e in range(1, EPOCHS)] + [acc]
        timing = {Attr.SECONDS: round(5.0 + 40.0 * est.gflops, 3), Attr.LATENCY_MS: lat}
        if not seed_name and k % 9 == 8:
            crash = {Attr.REASON: "RuntimeError: boom in epoch 1", Attr.EPOCHS: 1}
            _add(study, sampled, TrialState.FAIL, None, {**attrs, **crash})
        elif not seed_name and k % 7 == 6:
            cut = {Attr.CURVE: curve[:1], Attr.EPOCHS: 1, **timing}
            reason = f"stopped early by the scheduler after epoch 1 of {EPOCHS}"
            _add(study, sampled, TrialState.PRUNED, None, {**attrs, **cut, Attr.REASON: reason})
        else:
            done = {Attr.CURVE: curve, Attr.EPOCHS: EPOCHS, **timing}
            _add(study, sampled, TrialState.COMPLETE, [acc, est.gflops, lat], {**attrs, **done})
    return study


def _add(
    study: optuna.Study,
    sampled: optuna.trial.FrozenTrial,
    state: TrialState,
    values: list[float] | None,
    attrs: dict,
) -> None:
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params=sampled.params,
            distributions=sampled.distributions,
            user_attrs=attrs,
        )
    )


def add_tampered_trial(study: optuna.Study) -> int:
    """A COMPLETE trial that dominates every made-up one (so it is on the front) whose user
    attrs have the wrong types, as a hand edit or another tool could leave them; the
    architecture itself is valid. Returns its number."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[99.0, 0.01, 0.01],
            user_attrs={
                Attr.ARCH: zoo.get("pit_ti").to_dict(),
                Attr.SEED: ["pit_ti"],
                Attr.PARAMS: "lots",
                Attr.GFLOPS: "0.7",
                Attr.LATENCY_MS: [1.0],
                Attr.EPOCHS: "all",
                Attr.CURVE: "rising",
                Attr.TARGET_IMG: "224",
                Attr.NODE: "here",
                Attr.SECONDS: None,
            },
        )
    )
    return len(study.trials) - 1


def add_repeat(study: optuna.Study, trial: optuna.trial.FrozenTrial, delta: float) -> None:
    """A COMPLETE repeat of ``trial`` with training seed 1 whose accuracy (objective 0) is
    ``delta`` points off: what ``search.repeats`` records."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[trial.values[0] + delta, *trial.values[1:]],
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={**trial.user_attrs, Attr.REPEAT_OF: trial.number, Attr.TRAIN_SEED: 1},
        )
    )
