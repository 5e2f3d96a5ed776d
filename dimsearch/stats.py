"""Distribution-free statistics shared by the benchmarks and the design-space statistics.

A benchmark's summary is a median over rounds or replays, and whether two medians differ is
read from intervals that assume nothing about the distribution (rounds on a shared machine
and hypervolumes of searches are both skewed): `median_interval`, pure Python. The error EDFs
of a design space get their bands from `bootstrap_band`, the one resampling bootstrap, which
needs numpy (imported inside it, so the benchmarks that only take medians do not pay for it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["bootstrap_band", "median_interval"]


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Confidence interval for the median of ``values``, from order statistics alone.

    The number of values below the true median is Binomial(n, 1/2) whatever the distribution,
    so the k-th smallest and k-th largest values bracket it with probability
    1 - 2 P(Binomial(n, 1/2) < k); k is the largest that keeps this at least ``confidence``.
    With too few values for that (n < 6 at 95%) the interval is the whole range.

    Returns:
        (low, high, coverage): the interval and its exact coverage probability.
    """
    if not values:
        raise ValueError("median_interval needs at least one value")
    ordered, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], coverage(k)


def bootstrap_band(
    strata: Sequence[Hashable],
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile-bootstrap band of a vector-valued statistic of some items.

    Each replicate draws, within every stratum, as many items as it has, with replacement,
    and evaluates ``statistic`` on the drawn indices (into ``strata``). Resampling within
    strata keeps each group's size, which is what a band per group of a design-space sample
    (items: architectures; strata: a design choice) asks for: "how would this group's curve
    move if another sample of the same size had been drawn". The band is the
    ``(1-level)/2`` and ``(1+level)/2`` percentiles of each coordinate over the replicates;
    coordinates a replicate cannot define (NaN) are left out of that coordinate's percentiles.

    Args:
        strata: one label per item (all equal: a plain bootstrap).
        statistic: indices -> 1-D float array of a fixed length (NaN where undefined).
        n_boot: replicates.
        level: coverage of the band.
        seed: the generator's seed: one seed, one band.

    Returns:
        ``(lo, hi)``, each as long as the statistic (NaN where no replicate defined it).
    """
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"`0 < level < 1` must hold, got level={level}")
    if n_boot < 1:
        raise ValueError(f"`n_boot >= 1` must hold, got n_boot={n_boot}")
    labels = list(strata)
    if not labels:
        raise ValueError("bootstrap_band needs at least one item")
    members = [np.flatnonzero([x == lab for x in labels]) for lab in dict.fromkeys(labels)]
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        idx = np.concatenate([m[rng.integers(0, m.size, size=m.size)] for m in members])
        reps.append(np.asarray(statistic(idx), dtype=float))
    stack = np.vstack(reps)
    defined = ~np.all(np.isnan(stack), axis=0)
    lo = np.full(stack.shape[1], np.nan)
    hi = np.full(stack.shape[1], np.nan)
    if defined.any():
        q = np.nanpercentile(stack[:, defined], [50 * (1 - level), 50 * (1 + level)], axis=0)
        lo[defined], hi[defined] = q[0], q[1]
    return lo, hi
