"""The figures of `dimsearch bench search`: replays of every method, summarised with intervals.

Per method, over its replications (`dimsearch.search.simulate`): the median hypervolume at
10/25/50/100% of the compute budget, each with a distribution-free 95% interval for the
median (`dimsearch.stats.median_interval`: order statistics, nothing assumed about the
distribution of hypervolumes, which is skewed: one lucky trial moves it a lot); the median
number of trials completed, stopped early and rejected before training; and the compute each
replication needed to reach random search's final median hypervolume, as a share of the
budget ("not reached" is infinite, so a median of them can be "not reached" too).

The issue's two targets are judged on those figures (`SearchBench.targets`):
(a) TPE + MOASHA reaches random search's final hypervolume in <= 35% of its compute (the
median share); (b) at the full budget TPE + MOASHA beats TPE + ASHA-on-accuracy with
non-overlapping intervals.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dimsearch.search import SearchSpace
from dimsearch.search.sample import SampleTable
from dimsearch.search.simulate import (
    FRACTIONS,
    METHODS,
    Method,
    Replay,
    describe_rungs,
    replayed_objectives,
    run_replays,
    table_reference,
)
from dimsearch.stats import median_interval

__all__ = ["Interval", "MethodSummary", "SearchBench", "Target", "bench_search"]

# Target (a): the share of random search's compute TPE + MOASHA may need.
TARGET_SHARE = 0.35


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinity


@dataclass(frozen=True)
class Interval:
    """The median of some values and a distribution-free interval for it."""

    median: float
    low: float
    high: float
    coverage: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        low, high, coverage = median_interval(list(values))
        return cls(statistics.median(values), low, high, coverage)

    def to_dict(self) -> dict[str, float | None]:
        """``None`` stands for infinity ("not reached")."""
        return {
            "median": _finite(self.median),
            "low": _finite(self.low),
            "high": _finite(self.high),
            "coverage": self.coverage,
        }


@dataclass(frozen=True)
class MethodSummary:
    """One method over its replications.

    Attributes:
        method: the method (sampler and scheduler).
        hypervolume: the hypervolume at each of `SearchBench.fractions` of the budget.
        completed, stopped, rejected: trials per replication that trained the full budget,
            were stopped by the scheduler, were invalid or over budget (never trained).
        exact_share: the share of trained proposals (all replications) that were
            architectures of the sample, replayed from a recorded run; the rest are surrogates.
        reach: compute to reach random search's final median hypervolume, as a share of the
            budget (inf: not reached); None when random search was not run.
        reached: replications that reached it.
        replays: the replications themselves (not compared, not in `to_dict`).
    """

    method: Method
    hypervolume: tuple[Interval, ...]
    completed: float
    stopped: float
    rejected: float
    exact_share: float
    reach: Interval | None
    reached: int
    replays: tuple[Replay, ...] = field(compare=False, repr=False)

    @property
    def final(self) -> Interval:
        return self.hypervolume[-1]

    def to_dict(self, fractions: Sequence[float]) -> dict[str, Any]:
        return {
            "method": self.method.name,
            "sampler": self.method.sampler,
            "scheduler": self.method.scheduler,
            "hypervolume": {
                f"{f:g}": iv.to_dict() for f, iv in zip(fractions, self.hypervolume, strict=True)
            },
            "completed": self.completed,
            "stopped": self.stopped,
            "rejected": self.rejected,
            "exact_share": self.exact_share,
            "reach_random_final": None if self.reach is None else self.reach.to_dict(),
            "reached": self.reached,
        }


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: what it asks, what was measured, and the verdict (None
    where it could not be measured because a method it needs was not run)."""

    name: str
    text: str
    measured: str
    met: bool | None

    @property
    def word(self) -> str:
        return {True: "met", False: "missed", None: "not measured"}[self.met]


@dataclass(frozen=True)
class SearchBench:
    """Everything `dimsearch bench search` prints (`to_dict` is its ``--json``).

    Attributes:
        sample: the recording study's name; archs, records, epochs: the sample's size.
        objectives, directions, reference: the replayed objectives and the hypervolume's
            reference point (fixed for the table).
        left_out: the space's objectives the replay cannot give, with why.
        timing, time_model: which epoch times were replayed and how surrogates are rescaled.
        rungs: where the ASHA / MOASHA methods can stop a trial.
        workers, reps, seed, neighbours: how the replays ran (replication r: seed + r).
        budget: worker-seconds per replication; budget_frac: its share of `recording`, the
            worker-seconds of training every architecture of the sample once.
        fractions: the budget shares the hypervolume is given at.
        random_final: random search's final median hypervolume (None: not run).
        methods: one summary per method, in the order asked.
        notes: what a reader of the figures should know (e.g. NSGA-II never left its
            random first generation).
        wall_seconds: how long the benchmark took.
    """

    sample: str
    archs: int
    records: int
    epochs: int
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    reference: tuple[float, ...]
    left_out: dict[str, str]
    timing: str
    time_model: str
    rungs: str
    workers: int
    reps: int
    seed: int
    neighbours: int
    budget: float
    budget_frac: float
    recording: float
    fractions: tuple[float, ...]
    random_final: float | None
    methods: tuple[MethodSummary, ...]
    notes: tuple[str, ...]
    wall_seconds: float

    def method(self, name: str) -> MethodSummary | None:
        return next((m for m in self.methods if m.method.name == name), None)

    @property
    def targets(self) -> tuple[Target, Target]:
        """(a) and (b) of the issue, judged on the medians and intervals."""
        moasha, asha = self.method("tpe+moasha"), self.method("tpe+asha")
        text_a = (
            "TPE + MOASHA reaches random search's final hypervolume in "
            f"<= {TARGET_SHARE:.0%} of its compute"
        )
        if moasha is None or moasha.reach is None:
            a = Target("a", text_a, "needs the random and tpe+moasha methods", None)
        else:
            r = moasha.reach
            a = Target(
                "a",
                text_a,
                f"median {_share(r.median)} ({_share(r.low)} .. {_share(r.high)}), "
                f"reached in {moasha.reached} of {self.reps} replications",
                r.median <= TARGET_SHARE,
            )
        text_b = (
            "at the full budget TPE + MOASHA beats TPE + ASHA-on-accuracy with "
            "non-overlapping intervals"
        )
        if moasha is None or asha is None:
            b = Target("b", text_b, "needs the tpe+moasha and tpe+asha methods", None)
        else:
            m, s = moasha.final, asha.final
            b = Target(
                "b",
                text_b,
                f"hypervolume {m.median:.4g} ({m.low:.4g} .. {m.high:.4g}) vs "
                f"{s.median:.4g} ({s.low:.4g} .. {s.high:.4g})",
                m.low > s.high,
            )
        return a, b

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "archs": self.archs,
            "records": self.records,
            "epochs": self.epochs,
            "objectives": list(self.objectives),
            "directions": list(self.directions),
            "reference": list(self.reference),
            "left_out": self.left_out,
            "timing": self.timing,
            "time_model": self.time_model,
            "rungs": self.rungs,
            "workers": self.workers,
            "reps": self.reps,
            "seed": self.seed,
            "neighbours": self.neighbours,
            "budget_seconds": self.budget,
            "budget_frac": self.budget_frac,
            "recording_seconds": self.recording,
            "fractions": list(self.fractions),
            "random_final_hypervolume": self.random_final,
            "methods": [m.to_dict(self.fractions) for m in self.methods],
            "notes": list(self.notes),
            "targets": [
                {"name": t.name, "target": t.text, "measured": t.measured, "verdict": t.word}
                for t in self.targets
            ],
            "wall_seconds": self.wall_seconds,
        }


def _share(x: float) -> str:
    return f"{x:.0%}" if math.isfinite(x) else "not reached"


def bench_search(
    table: SampleTable,
    space: SearchSpace | None = None,
    *,
    methods: Sequence[str] = tuple(METHODS),
    reps: int = 20,
    workers: int | None = None,
    budget_frac: float = 1.0,
    seed: int = 0,
    neighbours: int = 1,
    progress: Callable[[str, int, float], None] | None = None,
) -> SearchBench:
    """Replay every method ``reps`` times on ``table`` and summarise (see the module
    docstring). ``space`` defaults to the one the table recorded; ``workers`` to its
    ``search.max_concurrent``; ``progress(method, reps, seconds)`` is called per method."""
    started = time.perf_counter()
    rt, budget, replays = run_replays(
        table,
        space,
        methods=methods,
        reps=reps,
        workers=workers,
        budget_frac=budget_frac,
        seed=seed,
        neighbours=neighbours,
        progress=progress,
    )
    objectives, directions = replayed_objectives(rt.space)
    random_final = None
    if "random" in replays:
        random_final = statistics.median(r.hypervolume_at(budget) for r in replays["random"])
    summaries = []
    for name, runs in replays.items():
        trained = sum(len(r.trials) - r.rejected for r in runs)
        reach = None
        reached = 0
        if random_final is not None:
            shares = [r.compute_to_reach(random_final) / budget for r in runs]
            reach, reached = Interval.of(shares), sum(math.isfinite(s) for s in shares)
        summaries.append(
            MethodSummary(
                method=METHODS[name],
                hypervolume=tuple(
                    Interval.of([r.hypervolume_at(f * budget) for r in runs]) for f in FRACTIONS
                ),
                completed=statistics.median(r.completed for r in runs),
                stopped=statistics.median(r.stopped for r in runs),
                rejected=statistics.median(r.rejected for r in runs),
                exact_share=sum(r.exact for r in runs) / trained if trained else 0.0,
                reach=reach,
                reached=reached,
                replays=tuple(runs),
            )
        )
    notes = []
    nsga2 = next((m for m in summaries if m.method.sampler == "nsga2"), None)
    population = rt.space.sampler.population_size
    if nsga2 is not None and max(len(r.trials) for r in nsga2.replays) <= population:
        notes.append(
            f"{nsga2.method.name} never got past its first generation (population_size "
            f"{population}), which NSGA-II samples at random: it replays random search"
        )
    left_out = {
        o: "not replayable: a proposal off the sample has no measured latency"
        if o == "latency_ms"
        else "not replayable"
        for o in rt.space.objectives
        if o not in objectives
    }
    return SearchBench(
        sample=table.study,
        archs=len(rt.archs),
        records=len(table.records),
        epochs=table.epochs,
        objectives=tuple(objectives),
        directions=tuple(directions),
        reference=tuple(table_reference(rt)),
        left_out=left_out,
        timing=rt.timing,
        time_model=rt.time_model.describe(),
        rungs=describe_rungs(rt.space, rt.epochs),
        workers=next(iter(replays.values()))[0].workers,
        reps=reps,
        seed=seed,
        neighbours=rt.neighbours,
        budget=budget,
        budget_frac=budget_frac,
        recording=rt.recording_seconds,
        fractions=FRACTIONS,
        random_final=random_final,
        methods=tuple(summaries),
        notes=tuple(notes),
        wall_seconds=time.perf_counter() - started,
    )
