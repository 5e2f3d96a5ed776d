"""Multi-objective asynchronous successive halving (MOASHA): the stop/continue rule, pure.

Why: ASHA on accuracy alone judges a 0.26-GFLOP sample against 1.4-GFLOP PiT-XS at the first
rung and stops it, although it may sit on the accuracy/GFLOPs front the study is after. MOASHA
ranks the trials at a rung over all of the study's objectives instead.

The rule (`RungRule.on_result`):

* Rungs. Bracket ``s`` has rungs at epochs ``grace_period * reduction_factor**(s + k)``,
  k = 0, 1, ... (rounded up to whole epochs), strictly below ``max_t``. Reaching ``max_t`` is
  the end of the budget, never a stopping point; a bracket whose first rung would be at or past
  ``max_t`` trains its trials to the end (Hyperband's bracket without early stopping).
* Brackets. Trials are dealt to brackets round-robin in the order they are first seen (the
  k-th trial goes to bracket ``k % brackets``), so a replay assigns the same brackets. (Ray Tune
  and Syne Tune draw a bracket at random with probability proportional to ``e**rungs``.)
* Asynchronous. When a trial first reports at or past one of its rungs, its objective vector
  is recorded there and compared with everything recorded at that rung so far, itself
  included; no trial waits for a rung to fill. It continues iff ``rank / n <= 1 / eta``, where
  ``n`` is the number of trials recorded there and ``rank`` the number of them ranked strictly
  ahead of it (Syne Tune's rule). So the first arrival always continues; with eta = 2 so does
  the second (one result is no sample to judge by; Ray's ASHA would stop it if worse), and
  afterwards a trial stops once more than ``n / eta`` of the rung is ahead of it.
* Ranking (`priority_order`). Objectives are turned into costs (``max`` ones negated), each
  min-max normalised over the finite rows of the rung (so percent, GFLOPs and milliseconds
  weigh alike in distances; Syne Tune uses raw values), then Pareto fronts are peeled one by
  one (non-dominated sorting, Deb et al. 2002). Inside a front the order is an epsilon-net
  (farthest-point) order: first the front's best point on objective 0 (accuracy), then each
  time the point farthest from those already taken, so the first places spread along the
  front instead of crowding at its accurate end. Rows with identical vectors share the best
  rank among them; a row with any non-finite value (NaN accuracy) ranks behind all finite
  rows. With a single objective this is plain ASHA on that objective.
* Protected trials (seeds, references) always continue, but their results are recorded and
  count as competitors for the others. A stopped trial that reports again is told to stop
  again and recorded nowhere.

References:
    Li et al., "A System for Massively Parallel Hyperparameter Tuning" (ASHA), MLSys 2020.
    Schmucker, Donini, Zafar, Salinas, Archambeau, "Multi-objective Asynchronous Successive
    Halving", arXiv:2106.12639, 2021.
    Salinas, Perrone, Archambeau, Cruchant, "A multi-objective perspective on jointly tuning
    hardware and hyperparameters", NAS workshop at ICLR 2021 (the epsilon-net sort).
    Clarkson, "Nearest-neighbor searching and metric space dimensions", 2006 (farthest-point
    epsilon-nets).

The object knows nothing of Ray, Optuna or torch: a Ray ``TrialScheduler`` maps
``on_trial_add`` to `RungRule.add_trial` and ``on_trial_result`` to `RungRule.on_result`
(`Decision.STOP` -> ``TrialScheduler.STOP``); a simulator calls the same two methods.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = [
    "DIRECTIONS",
    "Arrival",
    "Decision",
    "Rung",
    "RungRule",
    "epsilon_net_order",
    "nondominated_fronts",
    "priority_order",
    "shared_ranks",
]

DIRECTIONS = ("max", "min")


class Decision(str, Enum):
    """What a trial does after a result: go on training, or stop now."""

    CONTINUE = "continue"
    STOP = "stop"


# --- ranking: pure functions on cost matrices (rows = trials, lower cost is better) ---------


def nondominated_fronts(costs: np.ndarray) -> np.ndarray:
    """Front number of each row of a finite (n, d) cost matrix: 0 = Pareto front, 1 = the
    front once front 0 is removed, ... Row i dominates row j when it is <= everywhere and <
    somewhere; identical rows share a front. O(n^2 d) time and memory (domination counts)."""
    costs = np.asarray(costs, dtype=float)
    n = len(costs)
    fronts = np.full(n, -1, dtype=int)
    if n == 0:
        return fronts
    no_worse = (costs[:, None, :] <= costs[None, :, :]).all(axis=2)
    better = (costs[:, None, :] < costs[None, :, :]).any(axis=2)
    dominates = no_worse & better  # [i, j]: row i dominates row j
    dominated_by = dominates.sum(axis=0)
    left = np.ones(n, dtype=bool)
    k = 0
    while left.any():
        front = left & (dominated_by == 0)
        fronts[front] = k
        left &= ~front
        dominated_by -= dominates[front].sum(axis=0)
        k += 1
    return fronts


def epsilon_net_order(points: np.ndarray) -> np.ndarray:
    """Farthest-point order of the rows of (m, d) ``points`` (lower is better on each column).

    Starts at the row lowest on column 0 (ties: lowest on column 1, ..., then the first row),
    then repeatedly takes the row whose Euclidean distance to the rows already taken is
    largest (ties: the first row). Every prefix is a well spread subset of the points.
    """
    points = np.asarray(points, dtype=float)
    m = len(points)
    if m == 0:
        return np.empty(0, dtype=int)
    first = int(np.lexsort(points.T[::-1])[0])  # lexsort's last key is its primary key
    order = [first]
    taken = np.zeros(m, dtype=bool)
    taken[first] = True
    nearest = np.linalg.norm(points - points[first], axis=1)
    for _ in range(m - 1):
        pick = int(np.argmax(np.where(taken, -np.inf, nearest)))
        order.append(pick)
        taken[pick] = True
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
    return np.asarray(order, dtype=int)


def _normalised(costs: np.ndarray) -> np.ndarray:
    """Each column min-max scaled to [0, 1]; a constant column becomes all zeros."""
    low = costs.min(axis=0)
    span = costs.max(axis=0) - low
    span[span == 0] = 1.0
    return (costs - low) / span


def priority_order(costs: np.ndarray) -> np.ndarray:
    """Row indices of an (n, d) cost matrix, best first.

    Finite rows come first, by Pareto front and inside a front by `epsilon_net_order`, both on
    the costs min-max normalised over the finite rows. Rows with a NaN or infinite cost follow,
    in row order. With one column this is a stable sort on that column.
    """
    costs = np.asarray(costs, dtype=float)
    if costs.ndim != 2:
        raise ValueError(f"costs must be an (n, d) matrix, got shape {costs.shape}")
    finite = np.isfinite(costs).all(axis=1)
    rows = np.flatnonzero(finite)
    if len(rows) == 0:
        return np.flatnonzero(~finite)
    scaled = _normalised(costs[rows])
    if scaled.shape[1] == 1:  # fronts are the groups of equal values: skip the n^2 matrix
        ordered = rows[np.argsort(scaled[:, 0], kind="stable")]
    else:
        fronts = nondominated_fronts(scaled)
        parts = []
        for k in range(fronts.max() + 1):
            members = np.flatnonzero(fronts == k)
            parts.append(rows[members[epsilon_net_order(scaled[members])]])
        ordered = np.concatenate(parts)
    return np.concatenate([ordered, np.flatnonzero(~finite)])


def shared_ranks(costs: np.ndarray) -> np.ndarray:
    """For each row, how many rows rank strictly ahead of it in `priority_order`.

    Rows with identical cost vectors share the best rank among them, and all rows with a
    non-finite cost share the rank after the last finite row: a duplicate is never behind its
    twin (in an epsilon-net a duplicate is at distance 0, so it would come last in its front).
    """
    costs = np.asarray(costs, dtype=float)
    order = priority_order(costs)
    finite = np.isfinite(costs).all(axis=1)
    best: dict[tuple[float, ...] | None, int] = {}
    ranks = np.empty(len(costs), dtype=int)
    for position, row in enumerate(order):
        key = tuple(costs[row].tolist()) if finite[row] else None
        ranks[row] = best.setdefault(key, position)
    return ranks


# --- the rule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One trial's result as recorded at a rung, and what the rule decided then.

    ``rank`` trials of the ``size`` recorded there (itself included) were ranked strictly ahead
    of it; ``decision`` is CONTINUE for a protected trial whatever its rank.
    """

    trial_id: Hashable
    values: tuple[float, ...]  # objective values in the objectives' order, as reported
    rank: int
    size: int
    decision: Decision
    protected: bool


@dataclass(frozen=True)
class Rung:
    """A snapshot of one rung for reports: who arrived, in order, and how they rank now."""

    bracket: int
    epoch: int
    objectives: tuple[tuple[str, str], ...]
    arrivals: tuple[Arrival, ...]

    def order(self) -> list[Hashable]:
        """Trial ids best first over everything recorded at the rung now."""
        if not self.arrivals:
            return []
        costs = _costs([a.values for a in self.arrivals], [d for _, d in self.objectives])
        return [self.arrivals[i].trial_id for i in priority_order(costs)]


def _costs(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(len(values), len(signs)) * signs


def _as_float(value: object) -> float:
    """A reported figure as a float; None (not measured) becomes NaN and so ranks last."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


class RungRule:
    """Multi-objective asynchronous successive halving; see the module docstring for the rule.

    Args:
        objectives: ``(name, "max" | "min")`` pairs; objective 0 seeds the epsilon-net inside a
            front. ``[("accuracy", "max")]`` alone gives plain ASHA on accuracy.
        grace_period: epochs before the first rung of bracket 0 (1 <= grace_period <= max_t).
        reduction_factor: eta > 1; roughly 1/eta of the trials at a rung continue.
        max_t: the full budget in epochs (the proxy training's ``train.epochs``).
        brackets: number of brackets; bracket s starts at grace_period * eta**s.
        protect: trial ids that always continue (seeds, reference models).

    Example::

        rule = RungRule([("accuracy", "max"), ("gflops", "min")], max_t=4)
        rule.add_trial(7, static={"gflops": 0.26})        # known before training
        rule.on_result(7, epoch=1, metrics={"accuracy": 61.5})  # -> Decision.CONTINUE
    """

    def __init__(
        self,
        objectives: Sequence[tuple[str, str]],
        *,
        grace_period: int = 1,
        reduction_factor: float = 2.0,
        max_t: int,
        brackets: int = 1,
        protect: Iterable[Hashable] = (),
    ) -> None:
        objectives = tuple((str(name), str(way)) for name, way in objectives)
        if not objectives:
            raise ValueError("at least one objective must be given, got none")
        names = [name for name, _ in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        for name, way in objectives:
            if way not in DIRECTIONS:
                raise ValueError(
                    f"objective direction must be one of {DIRECTIONS}, got {name!r}: {way!r}"
                )
        if not max_t >= 1:
            raise ValueError(f"`max_t >= 1` must hold, got max_t={max_t}")
        if not 1 <= grace_period <= max_t:
            raise ValueError(
                "`1 <= grace_period <= max_t` must hold, got "
                f"grace_period={grace_period}, max_t={max_t}"
            )
        if not reduction_factor > 1:
            raise ValueError(f"`reduction_factor > 1` must hold, got {reduction_factor}")
        if not brackets >= 1:
            raise ValueError(f"`brackets >= 1` must hold, got brackets={brackets}")
        self.objectives = objectives
        self.grace_period = grace_period
        self.reduction_factor = float(reduction_factor)
        self.max_t = max_t
        self.brackets = int(brackets)
        self._milestones = tuple(self._bracket_milestones(s) for s in range(self.brackets))
        self._protected = set(protect)
        self._bracket: dict[Hashable, int] = {}
        self._static: dict[Hashable, dict[str, float]] = {}
        self._stopped: set[Hashable] = set()
        # (bracket, epoch) -> arrivals in order; costs kept alongside for ranking
        self._arrivals: dict[tuple[int, int], list[Arrival]] = {}
        self._costs: dict[tuple[int, int], list[np.ndarray]] = {}

    def _bracket_milestones(self, s: int) -> tuple[int, ...]:
        epochs: list[int] = []
        k = 0
        while True:
            level = self.grace_period * self.reduction_factor ** (s + k)
            epoch = math.ceil(level - 1e-9)  # 2.25 epochs are reached after epoch 3
            if epoch >= self.max_t:
                return tuple(epochs)
            if not epochs or epoch > epochs[-1]:  # eta near 1 can round two levels together
                epochs.append(epoch)
            k += 1

    def milestones(self, bracket: int = 0) -> tuple[int, ...]:
        """The epochs at which a trial of ``bracket`` can be stopped (all below ``max_t``)."""
        return self._milestones[bracket]

    def add_trial(
        self,
        trial_id: Hashable,
        static: Mapping[str, float | None] | None = None,
        *,
        protected: bool = False,
    ) -> int:
        """Register a trial before its first result; returns its bracket.

        ``static`` holds objective values known before training (GFLOPs, params, latency); a
        value reported in ``on_result`` under the same name takes precedence. Names that are
        not objectives are ignored, so one measurement dict can feed an accuracy-only rule and
        a multi-objective one (a misspelt objective still fails at the trial's first result).
        ``protected`` trials are never stopped. A trial first seen in `on_result` is
        registered there, without static values.
        """
        if trial_id in self._bracket:
            raise ValueError(
                f"trial {trial_id!r} is already registered (bracket {self._bracket[trial_id]})"
            )
        names = {name for name, _ in self.objectives}
        kept = {k: _as_float(v) for k, v in (static or {}).items() if k in names}
        bracket = len(self._bracket) % self.brackets
        self._bracket[trial_id] = bracket
        self._static[trial_id] = kept
        if protected:
            self._protected.add(trial_id)
        return bracket

    def bracket_of(self, trial_id: Hashable) -> int:
        """The bracket a registered trial was dealt to."""
        return self._bracket[trial_id]

    def is_protected(self, trial_id: Hashable) -> bool:
        """Whether the rule never stops ``trial_id``."""
        return trial_id in self._protected

    def on_result(
        self, trial_id: Hashable, epoch: float, metrics: Mapping[str, float | None]
    ) -> Decision:
        """Decide whether ``trial_id`` goes on after reporting ``metrics`` at ``epoch``.

        ``epoch`` counts finished epochs (1 after the first). ``metrics`` must hold every
        objective not given as a static value; None or NaN values rank last. Returns STOP only
        at a rung below ``max_t`` (or for a trial already stopped), CONTINUE otherwise.
        """
        if trial_id not in self._bracket:
            self.add_trial(trial_id)
        if trial_id in self._stopped:
            return Decision.STOP
        if not epoch < self.max_t:  # the budget is spent: the trial ends by itself, unstopped
            return Decision.CONTINUE
        bracket = self._bracket[trial_id]
        reached = [m for m in self._milestones[bracket] if m <= epoch]
        if not reached:
            return Decision.CONTINUE
        key = (bracket, reached[-1])
        if any(a.trial_id == trial_id for a in self._arrivals.get(key, ())):
            return Decision.CONTINUE  # decided when it reached this rung
        values = self._values(trial_id, metrics)
        arrivals = self._arrivals.setdefault(key, [])
        costs = self._costs.setdefault(key, [])
        costs.append(_costs([values], [way for _, way in self.objectives])[0])
        rank = int(shared_ranks(np.stack(costs))[-1])
        size = len(costs)
        protected = trial_id in self._protected
        keep = protected or rank * self.reduction_factor <= size
        decision = Decision.CONTINUE if keep else Decision.STOP
        arrivals.append(Arrival(trial_id, values, rank, size, decision, protected))
        if decision is Decision.STOP:
            self._stopped.add(trial_id)
        return decision

    def _values(self, trial_id: Hashable, metrics: Mapping[str, float | None]) -> tuple[float, ...]:
        static = self._static[trial_id]
        values = []
        for name, _ in self.objectives:
            if name in metrics:
                values.append(_as_float(metrics[name]))
            elif name in static:
                values.append(static[name])
            else:
                reported = ", ".join(metrics) or "nothing"
                raise ValueError(
                    f"objective {name!r} must be reported or registered as a static value, "
                    f"got neither for trial {trial_id!r} (reported: {reported})"
                )
        return tuple(values)

    @property
    def rungs(self) -> tuple[Rung, ...]:
        """Every rung that has results, by bracket then epoch (snapshots, safe to keep)."""
        return tuple(
            Rung(bracket, epoch, self.objectives, tuple(self._arrivals[(bracket, epoch)]))
            for bracket, epoch in sorted(self._arrivals)
        )
