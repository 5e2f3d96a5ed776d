"""The Ray Tune adapter of the rung rule: `RungScheduler` asks `RungRule` at every epoch.

Contract: the decision is the pure `dimsearch.search.moasha.RungRule`'s, nothing else; this
module only translates. A trial's costs (GFLOPs, params) are known before training and given
to the rule when the trial's first result arrives, with its measured latency; accuracy comes
with every result. Results without an epoch (the over-budget report at epoch 0) never reach the
rule. A trial the rule stops is ended by Ray, and `StudyRecorder` records it PRUNED with the
epoch it reached; the reason names the rule, so a user can tell MOASHA from plain ASHA.

The same rule object runs in the simulator (`dimsearch.search.simulate`), so a scheduler
benchmark measures exactly what a real search does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from dimsearch.search.moasha import Decision, RungRule

__all__ = ["RungScheduler", "make_rule"]


def make_rule(space: Any, protect: tuple[str, ...] = ()) -> RungRule | None:
    """The space's rung rule, or None when its early stopping is ``none`` (or one epoch).

    ``moasha`` ranks on every objective of the space; ``asha`` on accuracy alone. Both honour
    ``grace_period``, ``reduction_factor`` and ``brackets``.
    """
    from dimsearch.search.study import OBJECTIVES

    es = space.early_stopping
    if es.kind == "none" or space.train.epochs <= 1:
        return None
    if es.kind == "asha":
        objectives = [("accuracy", "max")]
    else:
        objectives = [
            (name, "max" if OBJECTIVES[name] == "maximize" else "min") for name in space.objectives
        ]
    return RungRule(
        objectives,
        grace_period=min(es.grace_period, space.train.epochs),
        reduction_factor=es.reduction_factor,
        max_t=space.train.epochs,
        brackets=es.brackets,
        protect=protect,
    )


class RungScheduler(FIFOScheduler):
    """Ray Tune scheduler that continues or stops each trial as `RungRule` says.

    Args:
        rule: the decision logic.
        costs_of: Ray trial id -> the objective values known before training
            (``{"gflops": ..., "params_m": ...}``) and whether the trial is protected (a seed
            when ``early_stopping.protect_seeds`` holds); None for a trial the study does not
            know (never stopped).
        on_event: (kind, message) for the live view.
    """

    def __init__(
        self,
        rule: RungRule,
        costs_of: Callable[[str], tuple[dict[str, float], bool] | None],
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__()
        self.rule = rule
        self.costs_of = costs_of
        self.on_event = on_event
        self._known: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its tuner for a Ray-side resume that dimsearch never uses (a search
        # resumes from the study); the live view's console and the callbacks do not pickle
        return {}

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        epoch = result.get("epoch", 0)
        if not isinstance(epoch, int | float) or epoch < 1 or "over_budget" in result:
            return TrialScheduler.CONTINUE
        trial_id = trial.trial_id
        if trial_id not in self._known:
            known = self.costs_of(trial_id)
            if known is None:
                return TrialScheduler.CONTINUE
            static, protected = known
            self.rule.add_trial(trial_id, static=static, protected=protected)
            self._known.add(trial_id)
        metrics = {"accuracy": result.get("accuracy")}
        if "latency_ms" in result:
            metrics["latency_ms"] = result["latency_ms"]
        decision = self.rule.on_result(trial_id, epoch, metrics)
        return TrialScheduler.STOP if decision is Decision.STOP else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        names = ", ".join(name for name, _ in self.rule.objectives)
        return f"Rung rule on ({names}), milestones {self.rule.milestones()}."
