"""The Ray Tune adapter of the rung rule: it translates, the rule decides."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from dimsearch.search.moasha import RungRule
from dimsearch.search.scheduler import RungScheduler

_COSTS = {
    "big": ({"gflops": 1.4, "params_m": 10.6}, False),
    "mid": ({"gflops": 1.0, "params_m": 8.0}, False),
    "cheap": ({"gflops": 0.26, "params_m": 3.0}, False),
    "seed": ({"gflops": 2.9, "params_m": 23.5}, True),
}


def _scheduler(objectives: list[tuple[str, str]]) -> RungScheduler:
    rule = RungRule(objectives, grace_period=1, reduction_factor=2, max_t=4)
    return RungScheduler(rule, _COSTS.get)


def _report(s: RungScheduler, trial: str, epoch: int, acc: float, **extra: object) -> str:
    result = {"epoch": epoch, "accuracy": acc, "latency_ms": 5.0, **extra}
    return s.on_trial_result(None, SimpleNamespace(trial_id=trial), result)


def test_a_cheap_trial_on_the_front_continues_where_accuracy_alone_stops_it() -> None:
    for objectives, want in (
        ([("accuracy", "max")], TrialScheduler.STOP),
        ([("accuracy", "max"), ("gflops", "min")], TrialScheduler.CONTINUE),
    ):
        s = _scheduler(objectives)
        assert _report(s, "big", 1, 60.0) == TrialScheduler.CONTINUE
        assert _report(s, "mid", 1, 58.0) == TrialScheduler.CONTINUE
        # third at the rung: accuracy ranks it last (2 ahead of 3 > 1/2); GFLOPs puts it on
        # the front, where the epsilon-net places it second
        assert _report(s, "cheap", 1, 50.0) == want, objectives


def test_seeds_are_protected_and_over_budget_reports_never_reach_the_rule() -> None:
    s = _scheduler([("accuracy", "max")])
    for trial, acc in (("big", 60.0), ("mid", 59.0), ("cheap", 58.0)):
        _report(s, trial, 1, acc)
    assert _report(s, "seed", 1, 10.0) == TrialScheduler.CONTINUE  # worst, but a reference
    assert _report(s, "unknown", 1, 0.0) == TrialScheduler.CONTINUE  # not the study's trial
    assert _report(s, "late", 0, 0.0, over_budget="latency") == TrialScheduler.CONTINUE
    assert [a.trial_id for a in s.rule.rungs[0].arrivals] == ["big", "mid", "cheap", "seed"]
