"""Fidelity of a proxy: how far a cheaper measurement ranks architectures like the full one.

Read from a recorded sample (`dimsearch.search.sample.SampleTable`), where every architecture
trained the full budget with no early stopping, so each epoch is a rung a multi-fidelity
search could stop at:

* **rank agreement per epoch**: Kendall's tau-b (scipy; tau-b because accuracies tie at
  the 0.05-point resolution of the validation set) between the ranking after epoch ``e`` and
  the final one, with a percentile bootstrap 95% interval that resamples architectures;
* **top overlap**: the share of the final top 10% that are also in the epoch-``e`` top 10%,
  which is what a search that keeps the best cares about;
* **the cheapest rung**: the earliest epoch from which tau stays at or above a threshold
  (0.8), judged both by the interval's lower bound (safe) and by the point estimate;
* **seed noise**, where architectures were retrained with other training seeds: the spread of
  the final accuracy across seeds, the pooled std, and the share of pairwise differences
  between architectures smaller than a difference two seeds of one architecture can show;
* **cross-sample agreement**: tau and top overlap between the final rankings of two samples
  of the same architectures (another resolution or data size), matched by architecture.

An architecture's curve is the mean of its records' curves (its repeats); the bootstrap
resamples architectures, not records, because the question is about the space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dimsearch.analysis.points import AnalysisError
from dimsearch.search.sample import SampleRecord, SampleTable, arch_key

__all__ = [
    "CrossFidelity",
    "FidelityReport",
    "RungFidelity",
    "SeedNoise",
    "bootstrap_tau",
    "cheapest_rung",
    "compare_samples",
    "fidelity",
    "kendall_tau",
    "seed_noise",
    "top_k",
    "top_overlap",
]

# a difference of two single runs of one architecture falls within z * sqrt(2) * std 95% of
# the time (the difference of two independent draws has sqrt(2) times their std)
_Z95 = 1.959964


@dataclass(frozen=True)
class RungFidelity:
    """How the ranking after one epoch agrees with the final ranking.

    Attributes:
        epoch: 1-based epoch (the rung).
        cost: share of the full budget's training time spent by then (CPU seconds where
            recorded, else wall seconds, else epochs).
        tau: Kendall's tau-b with the final ranking (None when undefined: all tied).
        low, high: percentile bootstrap 95% interval of tau.
        top_overlap: share of the final top-k that are in this epoch's top-k.
    """

    epoch: int
    cost: float
    tau: float | None
    low: float | None
    high: float | None
    top_overlap: float


@dataclass(frozen=True)
class SeedNoise:
    """Run-to-run noise of the final accuracy, from architectures trained with several seeds.

    Attributes:
        archs: architectures with at least two training seeds.
        runs: their runs (one per architecture and training seed).
        mean_spread, max_spread: over those architectures, of max - min final accuracy
            across seeds (points).
        pooled_std: within-architecture std of the final accuracy, pooled (points).
        threshold: ``1.96 * sqrt(2) * pooled_std``: two runs of one architecture differ by
            less than this 95% of the time.
        within_noise: share of all pairs of architectures in the sample whose final
            accuracies differ by less than ``threshold``: comparisons a single run cannot
            decide.
    """

    archs: int
    runs: int
    mean_spread: float
    max_spread: float
    pooled_std: float
    threshold: float
    within_noise: float


@dataclass(frozen=True)
class CrossFidelity:
    """Agreement of the final rankings of two samples of the same architectures.

    Attributes:
        other: the other sample's study name.
        matched: architectures in both (matched by `arch_key`).
        only_here, only_there: architectures in one sample only (left out).
        tau, low, high, top_overlap: as in `RungFidelity`, between the two final rankings.
    """

    other: str
    matched: int
    only_here: int
    only_there: int
    tau: float | None
    low: float | None
    high: float | None
    top_overlap: float


@dataclass(frozen=True)
class FidelityReport:
    """Everything `fidelity` measures on one sample (see the module docstring).

    Attributes:
        study: the sample's study name.
        archs, records: architectures, and trained runs (repeats counted).
        epochs: the full budget.
        top_share, top_k: the top share asked for and the count it means here.
        threshold: the tau a rung must hold.
        rungs: one per epoch, the last (the final ranking itself) included.
        cheapest_by_low, cheapest_by_tau: earliest epoch from which the interval's lower
            bound, resp. the point estimate, stays >= threshold (None if never).
        cost_basis: what `RungFidelity.cost` is measured in.
        noise: seed noise, or None when no architecture has two training seeds.
        cross: agreement with a second sample, when one was given.
        boot, seed: bootstrap resamples and the seed of their generator.
    """

    study: str
    archs: int
    records: int
    epochs: int
    top_share: float
    top_k: int
    threshold: float
    rungs: tuple[RungFidelity, ...]
    cheapest_by_low: int | None
    cheapest_by_tau: int | None
    cost_basis: str
    noise: SeedNoise | None
    cross: CrossFidelity | None
    boot: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


# -- the statistics ----------------------------------------------------------------------------


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b between two rankings (ties handled); None when undefined (fewer than
    two items, or one side all tied)."""
    from scipy.stats import kendalltau

    if len(x) != len(y):
        raise AnalysisError(f"rankings of different lengths: {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    tau = kendalltau(x, y).statistic
    return None if math.isnan(tau) else float(tau)


def bootstrap_tau(
    x: Sequence[float], y: Sequence[float], *, boot: int = 1000, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile bootstrap 95% interval of `kendall_tau`, resampling items with replacement.

    Deterministic for a given ``seed``; resamples where tau is undefined (all tied) are left
    out. Returns (None, None) when no resample defines it.
    """
    return _bootstrap_many([np.asarray(x, float)], np.asarray(y, float), boot=boot, seed=seed)[0]


def _bootstrap_many(
    xs: Sequence[np.ndarray], y: np.ndarray, *, boot: int, seed: int
) -> list[tuple[float | None, float | None]]:
    """`bootstrap_tau` of several rankings against one, on the same resamples (so rungs are
    compared on the same draws of architectures)."""
    from scipy.stats import kendalltau

    n = y.size
    if n < 2:
        return [(None, None)] * len(xs)
    idx = np.random.default_rng(seed).integers(0, n, size=(boot, n))
    out = []
    for x in xs:
        taus = np.array([kendalltau(x[i], y[i]).statistic for i in idx], dtype=float)
        taus = taus[~np.isnan(taus)]
        if taus.size == 0:
            out.append((None, None))
            continue
        low, high = np.percentile(taus, [2.5, 97.5])
        out.append((float(low), float(high)))
    return out


def top_k(n: int, share: float) -> int:
    """How many items "the top ``share``" of ``n`` is: at least one, rounded up."""
    if not 0 < share <= 1:
        raise AnalysisError(f"the top share must be in (0, 1], got {share}")
    return max(1, math.ceil(share * n - 1e-9))


def _top(values: np.ndarray, k: int) -> set[int]:
    # best first; among equal values the earlier item wins (a stable sort), so ties at the
    # cut are broken the same way in both rankings
    return set(np.argsort(-values, kind="stable")[:k].tolist())


def top_overlap(x: Sequence[float], final: Sequence[float], share: float = 0.1) -> float:
    """Share of the top ``share`` of ``final`` that are also in the top ``share`` of ``x``
    (higher is better in both)."""
    a, b = np.asarray(x, float), np.asarray(final, float)
    if a.size != b.size or a.size == 0:
        raise AnalysisError(
            f"top overlap needs two rankings of equal length, got {a.size}, {b.size}"
        )
    k = top_k(a.size, share)
    return len(_top(a, k) & _top(b, k)) / k


def cheapest_rung(
    epochs: Sequence[int], values: Sequence[float | None], threshold: float
) -> int | None:
    """The earliest epoch from which ``values`` stay >= ``threshold`` up to the last epoch
    (a rung that dips below after it does not hold); None when even the last does not."""
    best = None
    for e, v in sorted(zip(epochs, values, strict=True), reverse=True):
        if v is None or v < threshold:
            break
        best = e
    return best


def _arch_curves(table: SampleTable) -> tuple[list[str], np.ndarray]:
    """Per architecture (in order of first appearance): its key and its mean curve."""
    groups = table.groups()
    keys = [arch_key(g[0].arch) for g in groups]
    curves = np.array([np.mean([r.curve for r in g], axis=0) for g in groups], dtype=float)
    return keys, curves.reshape(len(groups), table.epochs)


def seed_noise(table: SampleTable) -> SeedNoise | None:
    """The run-to-run noise of `SeedNoise`, or None when no architecture has two training
    seeds. Records of one architecture with the same training seed count as one run (their
    mean)."""
    finals_by_arch = []
    for g in table.groups():
        by_seed: dict[int, list[float]] = {}
        for r in g:
            by_seed.setdefault(r.train_seed, []).append(r.accuracy)
        finals_by_arch.append([float(np.mean(v)) for v in by_seed.values()])
    repeated = [np.asarray(f) for f in finals_by_arch if len(f) >= 2]
    if not repeated:
        return None
    spreads = [float(f.max() - f.min()) for f in repeated]
    ss = sum(float(((f - f.mean()) ** 2).sum()) for f in repeated)
    dof = sum(f.size - 1 for f in repeated)
    pooled = math.sqrt(ss / dof)
    threshold = _Z95 * math.sqrt(2.0) * pooled
    _, curves = _arch_curves(table)
    finals = curves[:, -1]
    diffs = np.abs(finals[:, None] - finals[None, :])[np.triu_indices(finals.size, k=1)]
    within = float((diffs < threshold).mean()) if diffs.size else 0.0
    return SeedNoise(
        archs=len(repeated),
        runs=sum(f.size for f in repeated),
        mean_spread=float(np.mean(spreads)),
        max_spread=max(spreads),
        pooled_std=pooled,
        threshold=threshold,
        within_noise=within,
    )


def _costs(records: Sequence[SampleRecord], epochs: int) -> tuple[list[float], str]:
    """Cumulative share of the budget's training time after each epoch, and its unit."""
    for attr, basis in (("epoch_cpu_seconds", "cpu seconds"), ("epoch_seconds", "wall seconds")):
        timed = [getattr(r, attr) for r in records if len(getattr(r, attr)) == epochs]
        if timed and len(timed) == len(records):
            per_epoch = np.sum(timed, axis=0)
            total = float(per_epoch.sum())
            if total > 0:
                return (np.cumsum(per_epoch) / total).tolist(), basis
    return [(e + 1) / epochs for e in range(epochs)], "epochs"


def compare_samples(
    table: SampleTable, other: SampleTable, *, top: float = 0.1, boot: int = 1000, seed: int = 0
) -> CrossFidelity:
    """Agreement of the final rankings of ``table`` and ``other`` over the architectures both
    hold (matched by `arch_key`, repeats averaged)."""
    keys_a, curves_a = _arch_curves(table)
    keys_b, curves_b = _arch_curves(other)
    final_b = dict(zip(keys_b, curves_b[:, -1].tolist(), strict=True))
    both = [i for i, k in enumerate(keys_a) if k in final_b]
    if len(both) < 2:
        raise AnalysisError(
            f"samples {table.study!r} and {other.study!r} share {len(both)} architecture(s); "
            f"comparing their rankings needs at least 2"
        )
    a = curves_a[both, -1]
    b = np.array([final_b[keys_a[i]] for i in both])
    ((low, high),) = _bootstrap_many([a], b, boot=boot, seed=seed)
    return CrossFidelity(
        other=other.study,
        matched=len(both),
        only_here=len(keys_a) - len(both),
        only_there=len(keys_b) - len(both),
        tau=kendall_tau(a, b),
        low=low,
        high=high,
        top_overlap=top_overlap(a, b, top),
    )


def fidelity(
    table: SampleTable,
    *,
    other: SampleTable | None = None,
    threshold: float = 0.8,
    top: float = 0.1,
    boot: int = 1000,
    seed: int = 0,
) -> FidelityReport:
    """Rank agreement of every epoch with the final one, seed noise, the cheapest rung, and
    (with ``other``) agreement with a second sample; see the module docstring."""
    if boot < 1:
        raise AnalysisError(f"`boot >= 1` must hold, got boot={boot}")
    _, curves = _arch_curves(table)
    n = curves.shape[0]
    if n < 2:
        raise AnalysisError(
            f"sample {table.study!r} has {n} architecture(s) with a full curve; "
            f"a ranking needs at least 2"
        )
    k = top_k(n, top)  # checks the share before the bootstrap runs
    final = curves[:, -1]
    epochs = list(range(1, table.epochs + 1))
    intervals = _bootstrap_many(list(curves.T), final, boot=boot, seed=seed)
    costs, basis = _costs(table.records, table.epochs)
    rungs = tuple(
        RungFidelity(
            epoch=e,
            cost=costs[e - 1],
            tau=kendall_tau(curves[:, e - 1], final),
            low=low,
            high=high,
            top_overlap=top_overlap(curves[:, e - 1], final, top),
        )
        for e, (low, high) in zip(epochs, intervals, strict=True)
    )
    return FidelityReport(
        study=table.study,
        archs=n,
        records=len(table.records),
        epochs=table.epochs,
        top_share=top,
        top_k=k,
        threshold=threshold,
        rungs=rungs,
        cheapest_by_low=cheapest_rung(epochs, [r.low for r in rungs], threshold),
        cheapest_by_tau=cheapest_rung(epochs, [r.tau for r in rungs], threshold),
        cost_basis=basis,
        noise=seed_noise(table),
        cross=None
        if other is None
        else compare_samples(table, other, top=top, boot=boot, seed=seed),
        boot=boot,
        seed=seed,
    )
