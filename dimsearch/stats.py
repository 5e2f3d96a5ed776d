"""Distribution-free statistics shared by the benchmarks (`bench generator`, `bench search`).

Pure Python, no numpy or torch: a benchmark's summary is a median over rounds or replays,
and whether two medians differ is read from intervals that assume nothing about the
distribution (rounds on a shared machine and hypervolumes of searches are both skewed).
"""

from __future__ import annotations

import math

__all__ = ["median_interval"]


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
