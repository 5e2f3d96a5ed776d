"""`bench search`: replays of samplers and schedulers on a small recorded table, in seconds.

The table is made by hand (tests/sample_factory.py's records) over a tiny PiT space of 64
architectures, so exact matches happen often and every surrogate has close neighbours; the
curves are made up (accuracy grows with FLOPs), the epoch times are affine in FLOPs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from sample_factory import record, table
from typer.testing import CliRunner

from dimsearch import cost
from dimsearch.analysis.hypervolume import hypervolume
from dimsearch.search import SearchSpace, load_space, space_from_dict
from dimsearch.search.sample import SampleTable
from dimsearch.search.search_bench import bench_search
from dimsearch.search.simulate import Replay, replay, table_reference
from dimsearch.search.surrogate import ReplayTable, SimulationError

EPOCHS = 4
TINY_ARCH = {
    "stages": 3,
    "heads": {"choices": [1, 2]},
    "head_dim": 32,
    "head_mult": 2,
    "depth": [{"low": 1, "high": 2}, {"low": 5, "high": 6}, {"low": 3, "high": 4}],
    "pool": {"choices": ["dwconv", "avg"]},
    "pos": {"choices": ["le", "none"]},
}


def tiny_space(**changes: Any) -> SearchSpace:
    """spaces/pit.yaml cut to 64 architectures (pit_ti among them), 4 epochs, ASHA settings."""
    data = load_space("spaces/pit.yaml").to_dict()
    data["arch"].update(TINY_ARCH)
    data.update(
        name="tiny",
        seeds=["pit_ti"],
        train={**data["train"], "epochs": EPOCHS},
        early_stopping={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        sampler={"kind": "tpe", "seed": 0, "n_startup_trials": 4},
        search={"trials": 12, "max_concurrent": 2, "timeout_min": None},
    )
    data.update(changes)
    return space_from_dict(data, source="tiny")


def every_params(space: SearchSpace) -> list[dict[str, Any]]:
    """The Optuna params of every architecture of the tiny space."""
    names = [n for n, s in space.params.items() if not s.fixed and s.kind == "choices"]
    ranges = {"s1.depth": [1, 2], "s2.depth": [5, 6], "s3.depth": [3, 4]}
    choices = {n: list(space.params[n].choices) for n in names}
    keys = [*choices, *ranges]
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*choices.values(), *ranges.values())
    ]


def arch_of(space: SearchSpace, params: dict[str, Any]):
    return space.sample(optuna.trial.FixedTrial(params))


def made_up_record(space: SearchSpace, number: int, params: dict[str, Any], **kw: Any):
    cfg = arch_of(space, params)
    est = cost.estimate(cfg, 224, 1000)
    mflops = cost.estimate(cfg, 32, 0).flops / 1e6
    final = 60 + 8 * math.log(est.gflops / 0.1) + (number % 5) * 0.7
    curve = [final - 6 * (EPOCHS - e) for e in range(1, EPOCHS + 1)]
    seconds = tuple(0.5 + 0.25 * mflops + 0.05 * e for e in range(EPOCHS))
    fields = {
        "optuna_params": params,
        "params": est.params,
        "gflops": est.gflops,
        "epoch_cpu_seconds": seconds,
        "epoch_seconds": tuple(3 * s for s in seconds),
    }
    fields.update(kw)
    return record(number, cfg.to_dict(), curve, **fields)


def tiny_table(space: SearchSpace, every: int = 3) -> SampleTable:
    """Every ``every``-th architecture of the space (pit_ti among them when every=3)."""
    recs = [
        made_up_record(space, i, p) for i, p in enumerate(every_params(space)) if i % every == 0
    ]
    return dataclasses.replace(table(recs, epochs=EPOCHS), space=space.to_dict())


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return tiny_space()


@pytest.fixture(scope="module")
def rt(space: SearchSpace) -> ReplayTable:
    return ReplayTable(tiny_table(space), space)


@pytest.fixture(scope="module")
def asha(rt: ReplayTable) -> Replay:
    return replay(rt, "tpe+asha", seed=1, workers=3, budget=rt.recording_seconds)


# -- the surrogate --------------------------------------------------------------------------


def test_an_exact_match_gets_its_recorded_run_and_time(rt: ReplayTable, space) -> None:
    rec = rt.table.records[4]
    run = rt.lookup(arch_of(space, rec.optuna_params), rec.optuna_params, np.random.default_rng())
    assert (run.source, run.records, run.distance) == ("exact", (rec.number,), 0.0)
    assert run.curve == rec.curve
    assert run.epoch_seconds == rec.epoch_cpu_seconds  # CPU time, not the (busy) wall time


def test_repeats_are_drawn_per_proposal_with_the_replications_generator(space) -> None:
    params = every_params(space)[0]
    runs = [made_up_record(space, n, params, train_seed=n) for n in (0, 1)]
    runs[1] = dataclasses.replace(runs[1], curve=tuple(v + 1 for v in runs[1].curve))
    rt = ReplayTable(dataclasses.replace(table(runs, epochs=EPOCHS), space=space.to_dict()), space)
    cfg = arch_of(space, params)

    def draws(seed: int) -> list[tuple[float, ...]]:
        rng = np.random.default_rng(seed)
        return [rt.lookup(cfg, params, rng).curve for _ in range(20)]

    assert draws(7) == draws(7)
    assert {c for c in draws(7)} == {runs[0].curve, runs[1].curve}  # seed noise is replayed


def test_a_surrogate_gets_its_nearest_neighbours_run_with_exact_costs(rt, space) -> None:
    rng = np.random.default_rng(0)
    recorded = {tuple(sorted(r.optuna_params.items())) for r in rt.table.records}
    params = next(p for p in every_params(space) if tuple(sorted(p.items())) not in recorded)
    cfg = arch_of(space, params)
    run = rt.lookup(cfg, params, rng)
    d = rt.distances(params)
    assert run.source == "surrogate" and run.distance == d.min() > 0
    # one categorical or one depth step apart, out of the 6 parameters
    assert d.min() == pytest.approx(1 / 6)
    (number,) = run.records
    nb = next(r for r in rt.table.records if r.number == number)
    assert d[[r.number for r in rt.table.records].index(number)] == d.min()
    assert run.curve == nb.curve
    tm = rt.time_model
    mf = cost.estimate(cfg, 32, 0).flops / 1e6
    nb_mf = cost.estimate(arch_of(space, nb.optuna_params), 32, 0).flops / 1e6
    assert run.epoch_seconds == pytest.approx(
        [t * tm.seconds(mf) / tm.seconds(nb_mf) for t in nb.epoch_cpu_seconds]
    )
    # the made-up times are 0.575 + 0.25 s/MFLOP on average (stored to 10 ms): the fit finds them
    assert tm.intercept == pytest.approx(0.575, abs=0.005)
    assert tm.slope == pytest.approx(0.25, abs=0.001)


def test_completed_trials_carry_exact_analytic_costs(asha: Replay) -> None:
    done = [t for t in asha.trials if t.state == "COMPLETE"]
    assert {t.source for t in done} == {"exact", "surrogate"}
    for t in done:
        est = cost.estimate(t.arch, 224, 1000)
        assert t.values == (t.curve[-1], est.flops / 1e9)  # accuracy, gflops (no latency)


# -- the replay -----------------------------------------------------------------------------


def test_the_same_seed_replays_identically(rt: ReplayTable) -> None:
    args = {"workers": 2, "budget": 0.6 * rt.recording_seconds}
    first = replay(rt, "tpe+moasha", seed=5, **args)
    assert replay(rt, "tpe+moasha", seed=5, **args) == first
    assert replay(rt, "tpe+moasha", seed=6, **args) != first


def test_a_stopped_trial_costs_only_its_epochs_and_is_pruned(asha: Replay) -> None:
    stopped = [t for t in asha.trials if t.state == "PRUNED" and t.source != "rejected"]
    assert stopped, "the tiny table should make ASHA stop some trials"
    trials = asha.study.get_trials(deepcopy=False)
    for t in stopped:
        assert 1 <= t.epochs < EPOCHS
        assert t.seconds == pytest.approx(sum(t.epoch_seconds[: t.epochs]))
        assert trials[t.number].state == TrialState.PRUNED
    for t in asha.trials:
        if t.state == "COMPLETE":
            assert t.seconds == pytest.approx(sum(t.epoch_seconds))
            assert trials[t.number].state == TrialState.COMPLETE
    # every worker-second is some trial's: nothing is charged twice or for nothing
    assert sum(t.seconds for t in asha.trials) == pytest.approx(asha.spent)
    assert asha.spent == pytest.approx(asha.budget)


def test_seeds_are_enqueued_first_and_never_stopped(asha: Replay) -> None:
    first = asha.trials[0]
    assert (first.seed, first.source, first.state) == ("pit_ti", "exact", "COMPLETE")
    assert all(t.seed is None for t in asha.trials[1:])


def test_proposals_over_budget_are_rejected_at_no_cost() -> None:
    space = tiny_space(budgets={"max_gflops": 0.4, "max_params_m": None}, seeds=[])
    admitted = [p for p in every_params(space) if space.check_budgets(arch_of(space, p)) is None]
    assert 0 < len(admitted) < 64
    rt = ReplayTable(tiny_table(space), space)
    run = replay(rt, "random", seed=0, workers=2, budget=rt.recording_seconds)
    rejected = [t for t in run.trials if t.source == "rejected"]
    assert rejected, "a random sampler proposes over-budget architectures here"
    trials = run.study.get_trials(deepcopy=False)
    for t in rejected:
        assert (t.state, t.seconds, t.epochs, t.start) == ("PRUNED", 0.0, 0, t.end)
        assert trials[t.number].state == TrialState.PRUNED
        assert t.arch is not None and space.check_budgets(t.arch)
    trained = [t for t in run.trials if t.source != "rejected"]
    assert all(space.check_budgets(t.arch) is None for t in trained)
    assert sum(t.seconds for t in trained) == pytest.approx(run.spent)


def test_the_clock_never_runs_backwards_nor_runs_more_than_w_trials(rt: ReplayTable) -> None:
    for workers in (1, 3):
        run = replay(rt, "tpe+moasha", seed=2, workers=workers, budget=rt.recording_seconds)
        times = [e[0] for e in run.events]
        assert times == sorted(times) and run.clock >= times[-1]
        trained = [t for t in run.trials if t.source != "rejected"]
        assert all(t.start <= (t.end if t.end is not None else run.clock) for t in trained)
        edges = sorted(
            [(t.start, 1) for t in trained]
            + [(t.end if t.end is not None else math.inf, -1) for t in trained],
            key=lambda e: (e[0], e[1]),  # an end and a start at one instant: end first
        )
        busy = np.cumsum([d for _, d in edges])
        assert busy.max() == workers


def test_the_hypervolume_history_is_monotone_and_exact(asha: Replay, rt: ReplayTable) -> None:
    spent = [s for s, _ in asha.history]
    hv = [h for _, h in asha.history]
    assert spent == sorted(spent) and hv == sorted(hv) and hv[-1] > 0
    done = [t for t in asha.trials if t.state == "COMPLETE"]
    assert len(asha.history) == len(done)
    ref = table_reference(rt)
    points = [(-t.values[0], t.values[1]) for t in done]  # minimisation form
    assert hv[-1] == pytest.approx(hypervolume(points, [-ref[0], ref[1]]))
    assert asha.hypervolume_at(asha.budget) == hv[-1]
    assert asha.compute_to_reach(hv[-1]) <= asha.budget
    assert asha.compute_to_reach(hv[-1] + 1) == math.inf


def test_the_reference_bounds_everything_a_proposal_can_reach(rt: ReplayTable) -> None:
    acc, gflops = table_reference(rt)
    assert acc < min(r.accuracy for r in rt.table.records)
    assert gflops > rt.space.budgets.max_gflops  # admitted proposals can exceed the table


def test_unreplayable_tables_are_errors_that_say_why(space: SearchSpace) -> None:
    t = tiny_table(space)
    with pytest.raises(SimulationError, match="train.epochs=4, table epochs=3"):
        ReplayTable(dataclasses.replace(t, epochs=3), space)
    untimed = [dataclasses.replace(r, epoch_cpu_seconds=(), epoch_seconds=()) for r in t.records]
    with pytest.raises(SimulationError, match="neither epoch_cpu_seconds nor epoch_seconds"):
        ReplayTable(dataclasses.replace(t, records=tuple(untimed)), space)
    with pytest.raises(SimulationError, match="stores no space"):
        bench_search(dataclasses.replace(t, space={}), reps=1)
    with pytest.raises(SimulationError, match="methods must be some of"):
        bench_search(t, methods=["grid"], reps=1)


# -- the benchmark and the command ----------------------------------------------------------


def test_bench_search_summarises_and_judges_the_targets(space: SearchSpace) -> None:
    res = bench_search(
        tiny_table(space), methods=["random", "tpe+asha", "tpe+moasha"], reps=3, budget_frac=0.5
    )
    assert [m.method.name for m in res.methods] == ["random", "tpe+asha", "tpe+moasha"]
    assert res.objectives == ("accuracy", "gflops") and "latency_ms" in res.left_out
    assert res.budget == pytest.approx(0.5 * res.recording)
    random = res.method("random")
    finals = sorted(r.hypervolume_at(res.budget) for r in random.replays)
    assert res.random_final == finals[1] == random.final.median
    for m in res.methods:
        assert [i.median for i in m.hypervolume] == sorted(i.median for i in m.hypervolume)
        shares = sorted(r.compute_to_reach(res.random_final) / res.budget for r in m.replays)
        assert m.reach.median == shares[1] and m.reached == sum(map(math.isfinite, shares))
    a, b = res.targets
    moasha, asha = res.method("tpe+moasha"), res.method("tpe+asha")
    assert a.met == (moasha.reach.median <= 0.35)
    assert b.met == (moasha.final.low > asha.final.high)
    json.dumps(res.to_dict(), allow_nan=False)  # "not reached" is null, not Infinity


def test_cli_bench_search_prints_the_figures(tmp_path, space: SearchSpace) -> None:
    from dimsearch.cli import app

    tiny_table(space).save(tmp_path / "t.json")
    runner = CliRunner()
    args = ["bench", "search", str(tmp_path / "t.json"), "--reps", "2", "--budget-frac", "0.3"]
    res = runner.invoke(app, [*args, "--methods", "random,tpe+moasha", "--workers", "3"])
    assert res.exit_code == 0, res.output
    for needle in ("hypervolume", "target (a)", "target (b)", "latency_ms", "wall time"):
        assert needle in res.output
    res = runner.invoke(app, [*args, "--methods", "nsga2", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert [m["method"] for m in d["methods"]] == ["nsga2"] and d["workers"] == 2
    assert d["targets"][0]["verdict"] == "not measured"
    assert "replays random search" in d["notes"][0]  # population 50 > the trials of a replay
    res = runner.invoke(app, [*args, "--methods", "grid"])
    assert res.exit_code == 2 and "methods must be some of" in res.output
