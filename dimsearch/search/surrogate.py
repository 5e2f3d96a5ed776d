"""What a proposed architecture trains like, read from a recorded sample: the replay's oracle.

A replay (`dimsearch.search.simulate`) asks, for every architecture a sampler proposes, for
its per-epoch accuracy and the seconds each epoch takes. `ReplayTable.lookup` answers:

* **Exact match** (the architecture, without its ``name``, is one the sample trained): one of
  its recorded runs, with its own epoch times. Where the sample retrained it with other seeds
  (repeats), the run is drawn with the replication's generator, so seed noise is part of a
  replay just as it is part of a real search.
* **Surrogate** (anything else): the run of the nearest recorded architecture in a normalised
  distance over the Optuna parameters: a categorical counts 0 or 1 (same choice or not), a
  number counts its difference as a share of its declared range (on a log scale where the
  range is log), a parameter only one of the two has (``s4.depth`` for a 3-stage net) counts
  1, and the distance is the mean over the space's parameters. Ties are broken at random by
  the replication's generator, so no recorded architecture is favoured by its position.

  One neighbour by default (``neighbours=1``), not an average of several: a sampler's
  proposals are off the table most of the time, whatever the method, and a mean of k curves
  has a narrower spread than single runs (it shrinks the best and worst towards the middle),
  so off-table proposals could never reach the sample's best accuracies and the front would
  be made of exact hits only. One neighbour's run keeps the sample's distribution of
  accuracies, its seed noise included. ``neighbours=k`` gives the inverse-distance mean of k
  neighbours' curves and times, for comparison.

Costs are never borrowed: GFLOPs and params of a proposal are its exact analytic figures
(`dimsearch.cost.estimate`, as the bridge records them). Time is borrowed and rescaled:

* Epoch seconds are the neighbour's ``epoch_cpu_seconds`` (the process's CPU time, steady on a
  shared machine where wall time swings with the load; ``epoch_seconds`` where a record has no
  CPU times), multiplied by ``model(proposal) / model(neighbour)``, where ``model`` is an
  affine fit ``a + b * MFLOPs`` of the table's mean epoch seconds on the analytic FLOPs at the
  proxy resolution. Affine and not a plain FLOPs ratio because an epoch has a fixed part (data
  loading, evaluation, optimizer steps): on the first 28 records of pit_fmnist32 the CPU
  seconds were 0.74 s + 0.23 s/MFLOP (log-log correlation 0.98), so a plain ratio would make a
  1.5-MFLOP net 45 times faster than a 68-MFLOP one instead of about 16. Where the fit is
  degenerate (fewer than two distinct FLOPs, or a slope <= 0) the plain ratio is used.

The analytic FLOPs for the time model leave out the classifier (``num_classes=0``): the table
does not record the proxy's class count, and the head is a rounding error of an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dimsearch import cost
from dimsearch.config import ArchConfig
from dimsearch.errors import DimsearchError
from dimsearch.search.sample import SampleRecord, SampleTable, arch_key

if TYPE_CHECKING:
    from dimsearch.search import SearchSpace

__all__ = ["ReplayTable", "Run", "SimulationError", "TimeModel", "epoch_times"]


class SimulationError(DimsearchError):
    """A replay cannot run on this table and space; the message says which rule broke."""


def epoch_times(record: SampleRecord) -> tuple[tuple[float, ...], str]:
    """The seconds each epoch of ``record`` took, and which field they came from."""
    if record.epoch_cpu_seconds:
        return record.epoch_cpu_seconds, "epoch_cpu_seconds"
    if record.epoch_seconds:
        return record.epoch_seconds, "epoch_seconds"
    raise SimulationError(
        f"the record of trial {record.number} has neither epoch_cpu_seconds nor "
        "epoch_seconds: a replay needs the duration of every epoch"
    )


@dataclass(frozen=True)
class Run:
    """How one proposal trains in the replay.

    Attributes:
        curve: held-out top-1 (%) after each epoch.
        epoch_seconds: simulated seconds of each epoch.
        source: ``exact`` (a recorded run of this very architecture) or ``surrogate``.
        records: trial numbers (in the recording study) of the runs it was made from.
        distance: normalised parameter distance to the nearest recorded architecture
            (0 for an exact match).
    """

    curve: tuple[float, ...]
    epoch_seconds: tuple[float, ...]
    source: str
    records: tuple[int, ...]
    distance: float


@dataclass(frozen=True)
class TimeModel:
    """Mean epoch seconds ``intercept + slope * MFLOPs`` (proxy resolution), fitted on the
    table; only its ratios are used (see the module docstring)."""

    intercept: float
    slope: float
    fitted_on: int

    def seconds(self, mflops: float) -> float:
        return self.intercept + self.slope * mflops

    def describe(self) -> str:
        if self.intercept == 0.0 and self.slope == 1.0:
            return "epoch seconds scaled by the FLOPs ratio (no usable fit)"
        return (
            f"epoch seconds {self.intercept:.3g} + {self.slope:.3g} x MFLOPs at the proxy "
            f"resolution (least squares over {self.fitted_on} runs), used as a ratio"
        )

    @classmethod
    def fit(cls, mflops: np.ndarray, seconds: np.ndarray) -> TimeModel:
        """Least squares of ``seconds`` on ``mflops``; a negative intercept is refitted
        through the origin; a degenerate fit falls back to the plain FLOPs ratio."""
        x, y = np.asarray(mflops, dtype=float), np.asarray(seconds, dtype=float)
        if len(np.unique(x)) < 2:
            return cls(0.0, 1.0, len(x))
        slope, intercept = np.polyfit(x, y, 1)
        if intercept < 0:
            intercept, slope = 0.0, float(x @ y / (x @ x))
        if not slope > 0:
            return cls(0.0, 1.0, len(x))
        return cls(float(intercept), float(slope), len(x))


class _Arch:
    """One recorded architecture: its repeats and what is known of it without training."""

    def __init__(self, records: tuple[SampleRecord, ...], space: SearchSpace) -> None:
        self.records = records
        self.params = dict(records[0].optuna_params)
        self.times = [epoch_times(r)[0] for r in records]
        cfg = ArchConfig.from_dict(records[0].arch)
        self.mflops = _proxy_mflops(cfg, space)
        est = cost.estimate(cfg, space.target_img_size, space.num_classes)
        self.gflops, self.params_m = est.flops / 1e9, est.params / 1e6
        self.seconds = float(np.mean([sum(t) for t in self.times]))  # one full training


def _proxy_mflops(cfg: ArchConfig, space: SearchSpace) -> float:
    return cost.estimate(cfg, space.data.img_size, 0).flops / 1e6


class ReplayTable:
    """The sample as a replay sees it: exact runs by architecture, neighbours by parameters.

    Args:
        table: the recorded sample.
        space: the space the replay samples from (normally the one the table recorded).
        neighbours: runs a surrogate proposal is made from (1: the nearest; see the module
            docstring for why).
    """

    def __init__(self, table: SampleTable, space: SearchSpace, neighbours: int = 1) -> None:
        if not table.records:
            raise SimulationError(f"sample {table.study!r} has no records to replay")
        if not neighbours >= 1:
            raise SimulationError(f"`neighbours >= 1` must hold, got neighbours={neighbours}")
        if space.train.epochs != table.epochs:
            raise SimulationError(
                f"the space's train.epochs must equal the table's budget, got "
                f"train.epochs={space.train.epochs}, table epochs={table.epochs}"
            )
        self.table, self.space = table, space
        self.epochs = table.epochs
        self.neighbours = min(neighbours, len(table.groups()))
        self.archs = [_Arch(g, space) for g in table.groups()]
        self._index = {arch_key(a.records[0].arch): i for i, a in enumerate(self.archs)}
        sources = {epoch_times(r)[1] for r in table.records}
        self.timing = sources.pop() if len(sources) == 1 else "mixed"
        mflops = [a.mflops for a in self.archs for _ in a.times]
        seconds = [float(np.mean(t)) for a in self.archs for t in a.times]
        self.time_model = TimeModel.fit(np.array(mflops), np.array(seconds))
        self._names, self._choice, self._matrix = self._encode_table()

    # -- what the sample cost ---------------------------------------------------------------

    @property
    def recording_seconds(self) -> float:
        """Seconds to train every architecture of the sample once to the full budget (the
        mean over its repeats): what recording the sample cost, the default replay budget."""
        return float(sum(a.seconds for a in self.archs))

    # -- distances ----------------------------------------------------------------------------

    def _encode_table(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        specs = {name: spec for name, spec in self.space.params.items() if not spec.fixed}
        self._specs = specs
        self._codes: dict[str, dict[Any, int]] = {}
        for name, spec in specs.items():
            if spec.kind == "choices":
                codes = {c: i for i, c in enumerate(spec.choices)}
                for a in self.archs:  # a table of another space may hold other choices
                    v = a.params.get(name)
                    if v is not None:
                        codes.setdefault(v, len(codes))
                self._codes[name] = codes
        names = list(specs)
        choice = np.array([specs[n].kind == "choices" for n in names], dtype=bool)
        matrix = np.array([self._encode(a.params, names) for a in self.archs], dtype=float)
        return names, choice, matrix.reshape(len(self.archs), len(names))

    def _encode(self, params: Mapping[str, Any], names: list[str]) -> list[float]:
        """One row: a choice's code, a number's position in its range (0..1), NaN if absent."""
        row = []
        for name in names:
            v = params.get(name)
            spec = self._specs[name]
            if v is None:
                row.append(math.nan)
            elif spec.kind == "choices":
                row.append(float(self._codes[name].get(v, -1)))
            else:
                low, high, x = float(spec.low), float(spec.high), float(v)
                if spec.log:
                    low, high, x = math.log(low), math.log(high), math.log(x)
                row.append((x - low) / (high - low) if high > low else 0.0)
        return row

    def distances(self, params: Mapping[str, Any]) -> np.ndarray:
        """Normalised distance (0..1) from ``params`` to every recorded architecture."""
        if not self._names:
            return np.zeros(len(self.archs))
        x = np.array(self._encode(params, self._names), dtype=float)
        m = self._matrix
        diff = np.abs(m - x)
        diff = np.where(self._choice, (diff > 0).astype(float), np.minimum(diff, 1.0))
        gone_x, gone_m = np.isnan(x), np.isnan(m)
        diff = np.where(gone_x | gone_m, np.where(gone_x & gone_m, 0.0, 1.0), diff)
        return diff.mean(axis=1)

    # -- lookups ------------------------------------------------------------------------------

    def lookup(self, cfg: ArchConfig, params: Mapping[str, Any], rng: np.random.Generator) -> Run:
        """How ``cfg`` (sampled with Optuna ``params``) trains: a recorded run of it, or its
        nearest recorded neighbour's run with the time rescaled (see the module docstring)."""
        exact = self._index.get(arch_key(cfg.to_dict()))
        if exact is not None:
            arch = self.archs[exact]
            i = int(rng.integers(len(arch.records)))
            r = arch.records[i]
            return Run(r.curve, arch.times[i], "exact", (r.number,), 0.0)
        d = self.distances(params)
        order = np.lexsort((rng.random(len(d)), d))  # by distance, ties at random
        chosen = order[: self.neighbours]
        mflops = _proxy_mflops(cfg, self.space)
        curves, times, numbers = [], [], []
        for j in chosen:
            arch = self.archs[j]
            i = int(rng.integers(len(arch.records)))
            scale = self.time_model.seconds(mflops) / self.time_model.seconds(arch.mflops)
            curves.append(arch.records[i].curve)
            times.append(tuple(t * scale for t in arch.times[i]))
            numbers.append(arch.records[i].number)
        if len(chosen) == 1:
            return Run(curves[0], times[0], "surrogate", tuple(numbers), float(d[chosen[0]]))
        near = d[chosen]
        weights = np.where(near == 0, 1.0, 0.0) if (near == 0).any() else 1.0 / near
        weights = weights / weights.sum()
        curve = tuple(float(v) for v in weights @ np.array(curves))
        seconds = tuple(float(v) for v in weights @ np.array(times))
        return Run(curve, seconds, "surrogate", tuple(numbers), float(near.min()))
