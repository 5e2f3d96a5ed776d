"""MOASHA's stop/continue rule on hand-made rungs (dimsearch.search.moasha)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dimsearch.search.moasha import (
    Decision,
    RungRule,
    epsilon_net_order,
    nondominated_fronts,
    priority_order,
    shared_ranks,
)

C, S = Decision.CONTINUE, Decision.STOP
MO = [("accuracy", "max"), ("gflops", "min")]
ACC = [("accuracy", "max")]


def _feed(rule: RungRule, trials: dict, epoch: int = 1) -> list[Decision]:
    """Register each trial with its GFLOPs and report its accuracy at ``epoch``, in order."""
    decisions = []
    for trial_id, (acc, gflops) in trials.items():
        rule.add_trial(trial_id, static={"gflops": gflops})
        decisions.append(rule.on_result(trial_id, epoch, {"accuracy": acc}))
    return decisions


# Worked example of the epsilon-net order, (accuracy %, GFLOPs):
#   A (90, 2.0), M1 (82, 1.3), M2 (66, 1.2), D (50, 1.0): more GFLOPs always buys accuracy,
#   so all four are on one front.
# Costs (-accuracy, GFLOPs) min-max normalised (accuracy range 40, GFLOPs range 1.0):
#   A (0, 1), M1 (0.2, 0.3), M2 (0.6, 0.2), D (1, 0).
# Seed: best accuracy, A.
# Distances to A: M1 sqrt(.04 + .49) = .728, M2 sqrt(.36 + .64) = 1.0, D sqrt(2) = 1.414 -> D.
# Distance to the nearer of A, D: M1 min(.728, sqrt(.64 + .09) = .854) = .728,
#                                 M2 min(1.0,  sqrt(.16 + .04) = .447) = .447 -> M1, then M2.
# Order A, D, M1, M2. By accuracy it would be A, M1, M2, D; with raw distances (accuracy's
# 40-point range swamping the 1.0 GFLOPs range: M1 min(8.03, 32.0), M2 min(24.0, 16.0)) it
# would be A, D, M2, M1.
WORKED = {"A": (90.0, 2.0), "M1": (82.0, 1.3), "M2": (66.0, 1.2), "D": (50.0, 1.0)}


def _costs(points: dict) -> np.ndarray:
    return np.array([[-acc, gflops] for acc, gflops in points.values()])


def test_epsilon_net_order_matches_the_worked_example() -> None:
    names = list(WORKED)
    order = priority_order(_costs(WORKED))
    assert [names[i] for i in order] == ["A", "D", "M1", "M2"]
    normalised = np.array([[0, 1], [0.2, 0.3], [0.6, 0.2], [1, 0]])
    assert [names[i] for i in epsilon_net_order(normalised)] == ["A", "D", "M1", "M2"]


def test_order_does_not_depend_on_units() -> None:
    """GFLOPs in MFLOPs or accuracy as a fraction rank the same (each objective normalised)."""
    costs = _costs(WORKED)
    for scale in ([1, 1000], [0.01, 1], [100, 1e-3]):
        assert priority_order(costs * np.array(scale)).tolist() == [0, 3, 1, 2]


def test_epsilon_net_decides_inside_a_front() -> None:
    # M1, A, D arrive and continue (D: 1 of 3 ahead, 1 * 2 <= 3); M2 arrives last with A, D and
    # M1 ahead of it (worked example): 3 * 2 > 4, stop. By accuracy order M2 would have 2 ahead
    # (2 * 2 <= 4) and continue, as it does under accuracy-only ASHA.
    arrivals = {k: WORKED[k] for k in ("M1", "A", "D", "M2")}
    assert _feed(RungRule(MO, max_t=4), arrivals) == [C, C, C, S]
    assert _feed(RungRule(ACC, max_t=4), arrivals)[-1] is C


def test_cheap_trial_on_the_front_continues_where_accuracy_asha_stops_it() -> None:
    # PiT-XS-like at 1.4 GFLOPs, two costlier dominated samples, then a 0.26-GFLOP sample at
    # 60 %: on the front with PiT-XS (1 ahead of 4: continue), last on accuracy (3 ahead: stop).
    trials = {"pit_xs": (80.0, 1.4), "mid": (70.0, 1.5), "big": (75.0, 2.0), "cheap": (60.0, 0.26)}
    assert _feed(RungRule(MO, max_t=4), trials) == [C, C, C, C]
    assert _feed(RungRule(ACC, max_t=4), trials) == [C, C, C, S]


def test_dominated_trial_stops() -> None:
    # A, B, C form the front; X (50 %, 1.6 GFLOPs) is dominated by B and C, so 3 of 4 are
    # ahead of it. (Were the rung one front, X, the point farthest from A, would come second.)
    trials = {"A": (90.0, 2.0), "B": (85.0, 1.5), "C": (80.0, 1.0), "X": (50.0, 1.6)}
    rule = RungRule(MO, max_t=4)
    assert _feed(rule, trials) == [C, C, C, S]
    (rung,) = rule.rungs
    assert rung.arrivals[-1].rank == 3 and rung.arrivals[-1].size == 4
    assert rung.order()[-1] == "X"


def test_nondominated_fronts_peel_one_by_one() -> None:
    costs = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [2, 2], [6, 6]])
    assert nondominated_fronts(costs).tolist() == [0, 0, 0, 1, 2, 0, 3]


@pytest.mark.parametrize("eta, expected", [(2, [C, C, S, C, C]), (3, [C, S, S, C, S])])
def test_first_arrivals_are_judged_by_what_the_rung_holds(eta: float, expected: list) -> None:
    # accuracy 50, 40, 30, 60, 45 arrive one by one; ahead of each: 0, 1, 2, 0, 2 of n = 1..5.
    # eta = 2: stop iff 2 * ahead > n -> only the third (2 * 2 > 3). eta = 3: 3 * 1 > 2, 3 * 2 > 3,
    # 3 * 2 > 5. The first arrival always continues; a stopped trial still counts for later ones.
    for objectives in (ACC, MO):
        rule = RungRule(objectives, max_t=9, reduction_factor=eta)
        trials = {i: (acc, 1.0) for i, acc in enumerate([50.0, 40.0, 30.0, 60.0, 45.0])}
        assert _feed(rule, trials) == expected


def test_a_trial_is_judged_once_per_rung_and_again_at_the_next() -> None:
    rule = RungRule(ACC, max_t=8)  # rungs at epochs 1, 2, 4
    assert rule.milestones() == (1, 2, 4)
    for trial_id, acc in (("a", 50.0), ("b", 60.0), ("c", 70.0)):
        assert rule.on_result(trial_id, 1, {"accuracy": acc}) is C
    assert rule.on_result("a", 1, {"accuracy": 0.0}) is C  # already decided at epoch 1
    rule.on_result("c", 2, {"accuracy": 80.0})
    rule.on_result("b", 2, {"accuracy": 70.0})
    assert rule.on_result("a", 3, {"accuracy": 40.0}) is S  # recorded at epoch 2's rung
    assert rule.on_result("a", 4, {"accuracy": 99.0}) is S  # stopped stays stopped
    assert [(r.epoch, [a.trial_id for a in r.arrivals]) for r in rule.rungs] == [
        (1, ["a", "b", "c"]),
        (2, ["c", "b", "a"]),
    ]


def test_identical_results_share_a_rank() -> None:
    costs = np.array([[-80, 1.0], [-60, 0.5], [-80, 1.0], [-70, 2.0], [-60, 0.5]])
    ranks = shared_ranks(costs)
    assert ranks[2] == ranks[0] and ranks[4] == ranks[1]
    # a newcomer tied with the rung's best has nobody strictly ahead: it continues at eta = 5
    # (placed behind its twin it would have 1 of 4 ahead, and 5 * 1 > 4)
    rule = RungRule(ACC, max_t=4, reduction_factor=5)
    assert [rule.on_result(i, 1, {"accuracy": a}) for i, a in enumerate([80, 60, 70, 80])] == [
        C,
        S,
        S,
        C,
    ]


def test_one_objective_is_a_stable_sort() -> None:
    values = np.array([[3.0], [1.0], [2.0], [1.0], [3.0]])
    fronts = nondominated_fronts(values)
    general = [i for k in range(fronts.max() + 1) for i in np.flatnonzero(fronts == k)]
    assert priority_order(values).tolist() == general == [1, 3, 2, 0, 4]


def test_protected_trials_always_continue_and_still_compete() -> None:
    rule = RungRule(MO, max_t=4, protect=["seed"])  # rungs at epochs 1 and 2
    rule.add_trial("a", static={"gflops": 1.0})
    rule.add_trial("ref", static={"gflops": 0.5}, protected=True)
    rule.add_trial("new", static={"gflops": 1.5})
    rule.add_trial("seed", static={"gflops": 9.0})
    assert rule.on_result("a", 1, {"accuracy": 80.0}) is C
    assert rule.on_result("ref", 1, {"accuracy": 95.0}) is C
    # new (70 %, 1.5) is dominated by a and by the protected ref: 2 of 3 ahead, stop. Without
    # ref's result it would have 1 of 2 ahead and continue.
    assert rule.on_result("new", 1, {"accuracy": 70.0}) is S
    # seed is worst on both objectives at both rungs (3 of 4, then 2 of 3 ahead) yet continues
    assert rule.on_result("seed", 1, {"accuracy": 1.0}) is C
    rule.on_result("a", 2, {"accuracy": 85.0})
    rule.on_result("ref", 2, {"accuracy": 96.0})
    assert rule.on_result("seed", 2, {"accuracy": 2.0}) is C
    first, second = rule.rungs
    assert [(a.trial_id, a.rank, a.protected, a.decision) for a in first.arrivals] == [
        ("a", 0, False, C),
        ("ref", 0, True, C),
        ("new", 2, False, S),
        ("seed", 3, True, C),
    ]
    assert second.arrivals[-1].rank == 2 and rule.is_protected("seed")
    without_ref = RungRule(MO, max_t=4)
    assert _feed(without_ref, {"a": (80.0, 1.0), "new": (70.0, 1.5)}) == [C, C]


def test_brackets_shift_the_grace_period_and_are_dealt_round_robin() -> None:
    rule = RungRule(ACC, grace_period=1, reduction_factor=2, max_t=16, brackets=3)
    assert [rule.milestones(s) for s in range(3)] == [(1, 2, 4, 8), (2, 4, 8), (4, 8)]
    assert [rule.add_trial(i) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert rule.bracket_of(4) == 1
    # bracket 1 is not judged at epoch 1; at epoch 2 it competes only within bracket 1
    for trial_id, acc in ((0, 90.0), (3, 80.0), (1, 10.0)):
        assert rule.on_result(trial_id, 1, {"accuracy": acc}) is C
    assert rule.on_result(0, 2, {"accuracy": 95.0}) is C
    assert rule.on_result(1, 2, {"accuracy": 20.0}) is C  # alone in bracket 1's first rung
    assert rule.on_result(4, 2, {"accuracy": 15.0}) is C  # 1 of 2 ahead: 2 * 1 <= 2
    assert [(r.bracket, r.epoch, len(r.arrivals)) for r in rule.rungs] == [
        (0, 1, 2),
        (0, 2, 1),
        (1, 2, 2),
    ]
    # a bracket that starts at max_t never stops anything
    late = RungRule(ACC, grace_period=1, reduction_factor=2, max_t=4, brackets=3)
    assert late.milestones(2) == ()


@pytest.mark.parametrize(
    "grace, eta, max_t, milestones",
    [(1, 2, 4, (1, 2)), (1, 2, 5, (1, 2, 4)), (1, 1.5, 5, (1, 2, 3, 4)), (3, 3, 3, ())],
)
def test_rungs_stay_below_max_t(grace: int, eta: float, max_t: int, milestones: tuple) -> None:
    rule = RungRule(ACC, grace_period=grace, reduction_factor=eta, max_t=max_t)
    assert rule.milestones() == milestones


def test_reaching_max_t_is_never_a_stop() -> None:
    rule = RungRule(ACC, max_t=4)  # rungs 1, 2; epoch 4 is the end of the budget
    for trial_id in range(3):
        rule.on_result(trial_id, 1, {"accuracy": 90.0})
    rule.on_result(0, 2, {"accuracy": 90.0})
    rule.on_result(1, 2, {"accuracy": 90.0})
    # trial 2 skipped its epoch-2 report; its last report at max_t is worst but not a stop
    assert rule.on_result(2, 4, {"accuracy": 0.0}) is C
    assert rule.on_result(2, 5, {"accuracy": 0.0}) is C
    assert [r.epoch for r in rule.rungs] == [1, 2]
    assert len(rule.rungs[1].arrivals) == 2


def test_non_finite_results_rank_last_and_never_crash() -> None:
    costs = np.array([[np.nan, 1.0], [-50, 2.0], [-60, np.inf], [-40, 0.5]])
    assert priority_order(costs).tolist() == [1, 3, 0, 2]
    assert shared_ranks(costs).tolist() == [2, 0, 2, 1]
    rule = RungRule(MO, max_t=4)
    finite = {"ok": (60.0, 1.0), "ok2": (50.0, 2.0), "ok3": (55.0, 0.5)}
    assert _feed(rule, finite) == [C, C, C]
    # NaN accuracy with the lowest GFLOPs: behind all 3 finite trials of 4 (3 * 2 > 4), stop
    assert _feed(rule, {"nan": (math.nan, 0.01)}) == [S]
    # GFLOPs not measured (None) with the best accuracy: 3 of 5 ahead, stop
    rule.add_trial("none", static={"gflops": None})
    assert rule.on_result("none", 1, {"accuracy": 99.0}) is S
    # non-finite results are behind, not ahead: the worst finite trial has 3 of 6 ahead
    assert _feed(rule, {"late": (45.0, 3.0)}) == [C]
    assert rule.rungs[0].arrivals[-1].rank == 3
    assert rule.rungs[0].order()[-2:] == ["nan", "none"]
    all_nan = RungRule(MO, max_t=4)
    assert _feed(all_nan, {i: (math.nan, math.nan) for i in range(3)}) == [C, C, C]
    assert all_nan.rungs[0].order() == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objectives": [("accuracy", "maximize")]}, "direction must be one of"),
        ({"objectives": []}, "at least one objective"),
        ({"objectives": ACC * 2}, "must be unique"),
        ({"reduction_factor": 1}, "`reduction_factor > 1` must hold, got 1"),
        ({"grace_period": 5}, "grace_period=5, max_t=4"),
        ({"brackets": 0}, "`brackets >= 1`"),
    ],
)
def test_bad_settings_state_the_rule(kwargs: dict, message: str) -> None:
    settings = {"objectives": MO, "max_t": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        RungRule(**settings)


def test_missing_or_unknown_objective_values_are_errors() -> None:
    rule = RungRule(MO, max_t=4)
    rule.add_trial(1, static={"gflop": 3.0})  # not an objective: ignored
    with pytest.raises(ValueError, match="'gflops' must be reported or registered"):
        rule.on_result(1, 1, {"accuracy": 50.0})
    with pytest.raises(ValueError, match="'gflops' must be reported or registered"):
        rule.on_result(2, 1, {"accuracy": 50.0})
    assert rule.rungs == ()
    with pytest.raises(ValueError, match="already registered"):
        rule.add_trial(2)
