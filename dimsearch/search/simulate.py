"""`dimsearch bench search`: does the search beat random search? Replayed on a recorded sample.

Comparing search methods for real trains thousands of networks. A recorded sample (every
architecture of a space trained the full budget, `dimsearch.search.sample`) answers the
question in minutes instead, the way Syne Tune's simulator backend replays tabulated
benchmarks: results arrive at their recorded times on a simulated clock.

One replay (`replay`):

* W simulated workers share a clock. A free worker asks the method's sampler (a real Optuna
  study, in memory, with the replayed objectives' directions) for a trial; `SearchSpace.sample`
  turns it into an architecture and the bridge's rule applies: an invalid or over-budget
  sample is PRUNED at once and costs nothing. Seeds are enqueued first, as in a real run.
* The architecture's run comes from `ReplayTable.lookup` (a recorded run of it, or its nearest
  recorded neighbour's, with its own exact GFLOPs and params). Epoch ``e`` of a trial started
  at ``s`` is an event at ``s`` + the first ``e`` epoch durations on a heap; events are
  handled in time order (ties: the first pushed first), so the clock never runs backwards.
* The scheduler, the same `RungRule` object the Ray adapter drives, sees every result and says
  continue or stop. A stopped trial frees its worker and is PRUNED (it cost the epochs it
  ran); one that trains the full budget is COMPLETE with its objective values.
* Compute is worker-seconds: busy workers times elapsed simulated time. The replay ends when
  the budget is spent (by default, what recording the sample cost); trials still running then
  are cut off and their results never count.
* The hypervolume of the COMPLETE trials is recorded after each completion, against compute.

Objectives (`replayed_objectives`): those a replay can give exactly for any proposal:
accuracy (the run's final epoch) and the analytic gflops and params_m. ``latency_ms`` is left
out: a proposal off the table has no measured latency, and borrowing a neighbour's would be a
guess in precisely an objective the front is about. The hypervolume's reference point is fixed
per table (`table_reference`), so every method and replication shares one scale.

`bench_search` runs every method ``reps`` times (replication r of every method uses seed
``seed + r``: the same seed replays identically) and summarises: the median hypervolume at
10/25/50/100% of the budget with a distribution-free 95% interval (`dimsearch.stats`), the
trials completed, stopped and rejected, and the compute each method needs to reach random
search's final median hypervolume.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState

from dimsearch import cost, zoo
from dimsearch.analysis.hypervolume import hypervolume, reference_point
from dimsearch.config import ArchConfig
from dimsearch.errors import ArchError
from dimsearch.search import SearchSpace
from dimsearch.search.moasha import Decision, RungRule
from dimsearch.search.sample import SampleTable
from dimsearch.search.study import Attr
from dimsearch.search.surrogate import ReplayTable, SimulationError

__all__ = [
    "FRACTIONS",
    "METHODS",
    "REPLAYABLE",
    "Method",
    "Replay",
    "TrialTrace",
    "describe_rungs",
    "replay",
    "replayed_objectives",
    "run_replays",
    "space_of",
    "table_reference",
]

# Objectives a replay knows exactly for every proposal (see the module docstring).
REPLAYABLE = ("accuracy", "gflops", "params_m")
# Shares of the budget the hypervolume is reported at.
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
# Samples in a row that are invalid or over budget before a worker gives up: the bridge's
# rule (`dimsearch.search.bridge.MAX_REJECTED_IN_A_ROW`, which cannot be imported without Ray).
MAX_REJECTED_IN_A_ROW = 2000


@dataclass(frozen=True)
class Method:
    """A search method: which sampler proposes, which scheduler stops.

    Attributes:
        name: the label on the command line and in the output.
        sampler: a ``sampler.kind`` of the space (``random``, ``tpe``, ``nsga2``), built by
            `SearchSpace.make_sampler` with the space's other sampler settings.
        scheduler: ``none`` (every trial trains the full budget), ``asha`` (`RungRule` on
            accuracy only) or ``moasha`` (`RungRule` on every replayed objective); seeds are
            protected, and the rungs are the space's ``early_stopping`` settings.
    """

    name: str
    sampler: str
    scheduler: str


METHODS = {
    m.name: m
    for m in (
        Method("random", "random", "none"),
        Method("tpe+asha", "tpe", "asha"),
        Method("tpe+moasha", "tpe", "moasha"),
        Method("nsga2", "nsga2", "none"),
    )
}


def replayed_objectives(space: SearchSpace) -> tuple[list[str], list[str]]:
    """The space's objectives a replay can give (`REPLAYABLE`), and their Optuna directions,
    in the space's order."""
    pairs = [(o, d) for o, d in zip(space.objectives, space.directions, strict=True)]
    kept = [(o, d) for o, d in pairs if o in REPLAYABLE]
    return [o for o, _ in kept], [d for _, d in kept]


def table_reference(rt: ReplayTable) -> list[float]:
    """The hypervolume reference of a table: each objective's worst value any admissible
    proposal can have, padded outward by `reference_point`'s margin.

    Worst accuracy is the table's lowest final accuracy (a replayed run is always a recorded
    one, or a mean of recorded ones); worst GFLOPs and params are the space's budgets where it
    has them (an admitted proposal never exceeds them, but can exceed every recorded one),
    else the table's largest.
    """
    objectives, directions = replayed_objectives(rt.space)
    rows = [
        {"accuracy": r.accuracy, "gflops": a.gflops, "params_m": a.params_m}
        for a in rt.archs
        for r in a.records
    ]
    b = rt.space.budgets
    rows.append(
        {
            "accuracy": min(r["accuracy"] for r in rows),
            "gflops": max([r["gflops"] for r in rows] + [b.max_gflops or 0.0]),
            "params_m": max([r["params_m"] for r in rows] + [b.max_params_m or 0.0]),
        }
    )
    values = np.array([[r[o] for o in objectives] for r in rows], dtype=float)
    return [float(v) for v in reference_point(values, directions)]


# -- one replay -----------------------------------------------------------------------------


@dataclass
class TrialTrace:
    """What happened to one trial of a replay.

    Attributes:
        number: the Optuna trial number.
        seed: the zoo name of an enqueued seed, else None.
        source: ``exact``, ``surrogate`` (how its run was found) or ``rejected`` (invalid or
            over budget: never trained).
        start: simulated time it started.
        end: simulated time it ended; None if the budget ran out while it trained.
        epochs: epochs it trained.
        seconds: worker-seconds it cost (``end - start``, or up to the budget's end).
        state: ``COMPLETE``, ``PRUNED`` or ``RUNNING`` (cut off by the budget).
        values: its objective values (COMPLETE only).
        records: recorded runs (trial numbers in the sample) its run came from.
        curve, epoch_seconds: the run it was given.
        arch: its architecture (None for a rejected proposal that is no valid network).
    """

    number: int
    seed: str | None
    source: str
    start: float
    end: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    state: str = "RUNNING"
    values: tuple[float, ...] | None = None
    records: tuple[int, ...] = ()
    curve: tuple[float, ...] = ()
    epoch_seconds: tuple[float, ...] = ()
    arch: ArchConfig | None = None


@dataclass(frozen=True)
class Replay:
    """One replication of one method.

    Attributes:
        method, seed, workers, budget: how it ran (budget in worker-seconds).
        spent: worker-seconds spent (the budget, unless the sampler gave up first).
        clock: simulated time at the end.
        history: ``(compute spent, hypervolume)`` after each COMPLETE trial, in order.
        trials: every trial, by number.
        events: ``(time, trial number, epoch)`` of every epoch result, in handling order.
        study: the in-memory Optuna study it drove (not compared).
    """

    method: str
    seed: int
    workers: int
    budget: float
    spent: float
    clock: float
    history: tuple[tuple[float, float], ...]
    trials: tuple[TrialTrace, ...]
    events: tuple[tuple[float, int, int], ...]
    study: optuna.Study = field(compare=False, repr=False)

    def hypervolume_at(self, compute: float) -> float:
        """Hypervolume of the trials completed once ``compute`` worker-seconds were spent."""
        hv = 0.0
        for spent, value in self.history:
            if spent > compute:
                break
            hv = value
        return hv

    def compute_to_reach(self, target: float) -> float:
        """Worker-seconds spent when the hypervolume first reached ``target`` (inf: never)."""
        return next((spent for spent, hv in self.history if hv >= target), math.inf)

    @property
    def completed(self) -> int:
        """Trials that trained the full budget."""
        return sum(t.state == "COMPLETE" for t in self.trials)

    @property
    def stopped(self) -> int:
        """Trials the scheduler stopped early."""
        return sum(t.state == "PRUNED" and t.source != "rejected" for t in self.trials)

    @property
    def rejected(self) -> int:
        """Proposals that were invalid or over budget (never trained, no cost)."""
        return sum(t.source == "rejected" for t in self.trials)

    @property
    def exact(self) -> int:
        """Trained trials whose run is a recorded run of the very architecture."""
        return sum(t.source == "exact" for t in self.trials)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial and warns about experimental options; a replay makes
    thousands of trials, so both are silenced while it runs (and restored after)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _sampler(space: SearchSpace, kind: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler the space would build with ``kind`` (its other settings kept), seeded."""
    settings = dataclasses.replace(space.sampler, kind=kind, seed=seed)
    return dataclasses.replace(space, sampler=settings).make_sampler()


def _rule(
    space: SearchSpace, scheduler: str, objectives: list[str], directions: list[str], max_t: int
) -> RungRule | None:
    if scheduler == "none":
        return None
    pairs = [
        (o, "max" if d == "maximize" else "min")
        for o, d in zip(objectives, directions, strict=True)
    ]
    es = space.early_stopping
    return RungRule(
        pairs[:1] if scheduler == "asha" else pairs,  # objective 0 is always accuracy
        grace_period=es.grace_period,
        reduction_factor=es.reduction_factor,
        max_t=max_t,
        brackets=es.brackets,
    )


def describe_rungs(space: SearchSpace, epochs: int) -> str:
    """Where the ASHA / MOASHA methods can stop a trial, and where the settings come from."""
    rule = _rule(space, "asha", ["accuracy"], ["maximize"], epochs)
    assert rule is not None
    es = space.early_stopping
    rungs = "; ".join(
        f"bracket {b}: epochs {', '.join(map(str, rule.milestones(b))) or 'none'}"
        for b in range(rule.brackets)
    )
    source = "the space's early_stopping"
    if es.kind == "none":
        source += " (kind none: its defaults)"
    return (
        f"rungs {rungs} of {epochs} (grace_period {es.grace_period}, reduction_factor "
        f"{es.reduction_factor:g}, {es.brackets} bracket(s), from {source})"
    )


def replay(
    rt: ReplayTable,
    method: Method | str,
    *,
    seed: int,
    workers: int,
    budget: float,
    reference: Sequence[float] | None = None,
) -> Replay:
    """Replay ``method`` on the table for ``budget`` worker-seconds with ``workers`` workers.

    ``seed`` seeds the sampler and the generator that draws repeats and breaks neighbour
    ties: the same arguments give the same `Replay`. ``reference`` defaults to
    `table_reference`.
    """
    m = METHODS[method] if isinstance(method, str) else method
    if not workers >= 1:
        raise SimulationError(f"`workers >= 1` must hold, got workers={workers}")
    if not budget > 0:
        raise SimulationError(f"`budget > 0` must hold, got budget={budget} worker-seconds")
    with _quiet_optuna():
        return _Replayer(rt, m, seed, workers, budget, reference).run()


class _Replayer:
    """The event loop of `replay` (one use)."""

    def __init__(
        self,
        rt: ReplayTable,
        method: Method,
        seed: int,
        workers: int,
        budget: float,
        reference: Sequence[float] | None,
    ) -> None:
        space = rt.space
        self.rt, self.space, self.method = rt, space, method
        self.seed, self.workers, self.budget = seed, workers, budget
        self.objectives, directions = replayed_objectives(space)
        self.signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
        ref = table_reference(rt) if reference is None else list(reference)
        self.ref_min = np.asarray(ref, dtype=float) * self.signs
        self.study = optuna.create_study(
            directions=directions, sampler=_sampler(space, method.sampler, seed)
        )
        for name in space.seeds:
            self.study.enqueue_trial(space.params_of(zoo.get(name)), user_attrs={Attr.SEED: name})
        self.rule = _rule(space, method.scheduler, self.objectives, directions, rt.epochs)
        self.rng = np.random.default_rng(seed)
        self.clock = self.spent = 0.0
        self.heap: list[tuple[float, int, int, int]] = []  # (time, push order, trial, epoch)
        self.pushed = 0
        self.running: dict[int, tuple[optuna.Trial, dict[str, float]]] = {}
        self.traces: dict[int, TrialTrace] = {}
        self.events: list[tuple[float, int, int]] = []
        self.history: list[tuple[float, float]] = []
        self.front = np.zeros((0, len(self.objectives)))
        self.hv = 0.0

    def run(self) -> Replay:
        self._fill()
        while self.heap:
            t, _, number, epoch = self.heap[0]
            if t < self.clock:  # would charge negative compute and never end
                raise RuntimeError(f"internal: an event at {t} is before the clock {self.clock}")
            busy = len(self.running)
            step = busy * (t - self.clock)
            if self.spent + step > self.budget:  # the budget runs out before this result
                self.clock += (self.budget - self.spent) / busy
                self.spent = self.budget
                break
            heapq.heappop(self.heap)
            self.spent += step
            self.clock = t
            self.events.append((t, number, epoch))
            self._on_epoch(number, epoch)
            self._fill()
        for number in self.running:  # cut off by the budget
            self.traces[number].seconds = self.clock - self.traces[number].start
        return Replay(
            method=self.method.name,
            seed=self.seed,
            workers=self.workers,
            budget=self.budget,
            spent=self.spent,
            clock=self.clock,
            history=tuple(self.history),
            trials=tuple(self.traces[n] for n in sorted(self.traces)),
            events=tuple(self.events),
            study=self.study,
        )

    def _push(self, at: float, number: int, epoch: int) -> None:
        heapq.heappush(self.heap, (at, self.pushed, number, epoch))
        self.pushed += 1

    def _fill(self) -> None:
        while len(self.running) < self.workers and self._start():
            pass

    def _start(self) -> bool:
        """Start the next admissible proposal on a free worker; False if the sampler gave
        `MAX_REJECTED_IN_A_ROW` rejected samples in a row."""
        space = self.space
        for _ in range(MAX_REJECTED_IN_A_ROW):
            trial = self.study.ask()
            seed = trial.user_attrs.get(Attr.SEED)
            cfg = None
            try:
                cfg = space.sample(trial)
                reason = space.check_budgets(cfg)
            except ArchError as err:
                reason = f"invalid architecture: {err}"
            if reason:  # the bridge's rule: PRUNED before training, at no cost
                self.study.tell(trial, state=TrialState.PRUNED)
                self.traces[trial.number] = TrialTrace(
                    trial.number, seed, "rejected", self.clock, self.clock, state="PRUNED", arch=cfg
                )
                continue
            est = cost.estimate(cfg, space.target_img_size, space.num_classes)
            static = {"gflops": est.flops / 1e9, "params_m": est.params / 1e6}
            run = self.rt.lookup(cfg, trial.params, self.rng)
            if self.rule is not None:
                self.rule.add_trial(trial.number, static=static, protected=seed is not None)
            self.traces[trial.number] = TrialTrace(
                trial.number,
                seed,
                run.source,
                self.clock,
                records=run.records,
                curve=run.curve,
                epoch_seconds=run.epoch_seconds,
                arch=cfg,
            )
            self.running[trial.number] = (trial, static)
            self._push(self.clock + run.epoch_seconds[0], trial.number, 1)
            return True
        return False

    def _on_epoch(self, number: int, epoch: int) -> None:
        trace = self.traces[number]
        trace.epochs = epoch
        accuracy = trace.curve[epoch - 1]
        decision = Decision.CONTINUE
        if self.rule is not None:
            decision = self.rule.on_result(number, epoch, {"accuracy": accuracy})
        if epoch == self.rt.epochs:
            _, static = self.running[number]
            figures = {"accuracy": accuracy, **static}
            self._end(number, TrialState.COMPLETE, [figures[o] for o in self.objectives])
        elif decision is Decision.STOP:
            self._end(number, TrialState.PRUNED, None)
        else:
            self._push(self.clock + trace.epoch_seconds[epoch], number, epoch + 1)

    def _end(self, number: int, state: TrialState, values: list[float] | None) -> None:
        trial, _ = self.running.pop(number)
        trace = self.traces[number]
        trace.end, trace.seconds, trace.state = self.clock, self.clock - trace.start, state.name
        if values is None:
            self.study.tell(trial, state=state)
            return
        self.study.tell(trial, values)
        trace.values = tuple(values)
        p = np.asarray(values, dtype=float) * self.signs
        covered = bool(np.any(np.all(self.front <= p, axis=1)))  # adds no volume
        if not covered and np.all(p < self.ref_min):
            self.front = np.vstack([self.front, p])
            self.hv = hypervolume(self.front, self.ref_min)
        self.history.append((self.spent, self.hv))


# -- the benchmark --------------------------------------------------------------------------


def space_of(table: SampleTable, space: SearchSpace | None = None) -> SearchSpace:
    """``space``, or the space the table recorded (`space_from_dict`)."""
    if space is not None:
        return space
    if not table.space:
        raise SimulationError(
            f"sample {table.study!r} stores no space: give the space file (--space)"
        )
    from dimsearch.search.loader import space_from_dict

    return space_from_dict(table.space, source=f"the space stored in {table.study!r}")


def run_replays(
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
) -> tuple[ReplayTable, float, dict[str, list[Replay]]]:
    """Every method ``reps`` times; returns the replay table, the budget (worker-seconds)
    and the replays by method. ``progress(method, reps, seconds)`` after each method."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SimulationError(
            f"methods must be some of {', '.join(METHODS)}, got {', '.join(methods) or 'none'}"
        )
    if not reps >= 1:
        raise SimulationError(f"`reps >= 1` must hold, got reps={reps}")
    if not budget_frac > 0:
        raise SimulationError(f"`budget_frac > 0` must hold, got budget_frac={budget_frac}")
    rt = ReplayTable(table, space_of(table, space), neighbours)
    workers = rt.space.search.max_concurrent if workers is None else workers
    budget = rt.recording_seconds * budget_frac
    reference = table_reference(rt)
    out: dict[str, list[Replay]] = {}
    for name in dict.fromkeys(methods):
        started = time.perf_counter()
        out[name] = [
            replay(rt, name, seed=seed + r, workers=workers, budget=budget, reference=reference)
            for r in range(reps)
        ]
        if progress is not None:
            progress(name, reps, time.perf_counter() - started)
    return rt, budget, out
