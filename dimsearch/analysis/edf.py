"""Design-space statistics: error EDFs, complexity normalisation and trends.

The method is pycls's (Radosavovic et al., "On Network Design Spaces for Visual Recognition",
ICCV 2019, and "Designing Network Design Spaces", CVPR 2020): judge a design space, or one
choice inside it, by the *distribution* of errors of models sampled from it, not by its best
model. The tool is the error empirical distribution function

    F(e) = sum_i w_i [e_i <= e] / sum_i w_i

and, because a choice that makes models bigger also makes them better, distributions are
compared after *complexity normalisation*: samples are reweighted so every compared group has
the same FLOPs distribution, and what remains is the effect of the choice itself.

Here the models are a study's COMPLETE trials, as `dimsearch.analysis.points.DesignPoints`
(error = 100 - proxy accuracy, FLOPs = ``gflops``; why PRUNED trials are left out is there).

Pure numpy: no plotting and no storage access here.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dimsearch.analysis.points import AnalysisError, DesignPoints

__all__ = [
    "ChoiceEDF",
    "Comparison",
    "EDFSummary",
    "GroupEDF",
    "Normalization",
    "Trend",
    "bootstrap_ci",
    "compare_points",
    "complexity_weights",
    "edf_by_choice",
    "error_edf",
    "group_edfs",
    "summarize",
    "trend_by_value",
    "weighted_quantile",
]

# Quantiles reported per group: "the error below which the best 10 / 25 / 50 % of models lie".
QUANTILES = (0.1, 0.25, 0.5)


# -- the EDF -------------------------------------------------------------------------------------


def _weights(errors: np.ndarray, weights: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.full(errors.shape, 1.0 / max(len(errors), 1))
    w = np.asarray(weights, dtype=float)
    if w.shape != errors.shape:
        raise AnalysisError(
            f"`len(weights) == len(errors)` must hold, got {w.size} weights for "
            f"{errors.size} errors"
        )
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise AnalysisError("weights must be finite and non-negative")
    total = w.sum()
    if total <= 0:
        raise AnalysisError("weights must not all be zero")
    return w / total


def error_edf(
    errors: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    grid: Sequence[float] | np.ndarray | None = None,
    *,
    strict: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The (weighted) empirical distribution function of errors.

    ``F(e)`` is the weighted fraction of models with error ``<= e`` (right-continuous, the
    usual ECDF and what pycls plots); with ``strict=True`` it is the fraction with error
    ``< e``, the paper's formula. The two differ only at the sample errors themselves.

    Args:
        errors: one error (%) per model.
        weights: non-negative, one per model; normalised to sum to 1. ``None``: equal weights.
        grid: where to evaluate F. ``None``: at the sorted distinct errors, which is exactly
            where the step function jumps (plot with ``drawstyle="steps-post"``).
        strict: use ``<`` instead of ``<=``.

    Returns:
        ``(grid, F)`` as float arrays of the same length.
    """
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or e.size == 0:
        raise AnalysisError(f"errors must be a non-empty 1-D sequence, got shape {e.shape}")
    w = _weights(e, weights)
    order = np.argsort(e, kind="stable")
    e_sorted, cum = e[order], np.cumsum(w[order])
    x = np.unique(e) if grid is None else np.asarray(grid, dtype=float)
    idx = np.searchsorted(e_sorted, x, side="left" if strict else "right")
    f = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)
    return x, np.clip(f, 0.0, 1.0)


def weighted_quantile(
    errors: Sequence[float] | np.ndarray,
    q: float,
    weights: Sequence[float] | np.ndarray | None = None,
) -> float:
    """The smallest error ``e`` with ``F(e) >= q``: the error reached by the best ``q`` share."""
    if not 0 < q <= 1:
        raise AnalysisError(f"`0 < q <= 1` must hold, got q={q}")
    grid, f = error_edf(errors, weights)
    # a tolerance, so that F = 0.1 + 1e-17 from a cumulative sum still reaches q = 0.1
    return float(grid[np.argmax(f >= q - 1e-12)])


def edf_area(
    errors: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None,
    lo: float,
    hi: float,
) -> float:
    """Area under F on ``[lo, hi]``, divided by ``hi - lo`` (1 = every model at ``lo``).

    One number for "how far left the EDF sits", comparable between groups when they share
    the interval. Computed exactly: the integral of P(X <= e) over [lo, hi] is
    ``hi - E[clip(X, lo, hi)]``.
    """
    if not hi > lo:
        raise AnalysisError(f"`lo < hi` must hold, got (lo={lo}, hi={hi})")
    e = np.asarray(errors, dtype=float)
    w = _weights(e, weights)
    return float((hi - np.sum(w * np.clip(e, lo, hi))) / (hi - lo))


@dataclass(frozen=True)
class EDFSummary:
    """A group's EDF in a few numbers.

    Attributes:
        n: models in the group.
        n_effective: Kish's effective sample size ``(sum w)^2 / sum w^2``; equals ``n`` for
            equal weights and shrinks as normalisation concentrates weight on a few models.
        mean: weighted mean error.
        min: lowest error (among models of positive weight).
        area: `edf_area` on the comparison interval ``span``.
        span: the interval the area is taken on (shared by the groups compared).
        quantiles: ``{q: weighted_quantile(q)}`` for ``q`` in `QUANTILES`.
    """

    n: int
    n_effective: float
    mean: float
    min: float
    area: float
    span: tuple[float, float]
    quantiles: dict[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_effective": self.n_effective,
            "mean": self.mean,
            "min": self.min,
            "area": self.area,
            "span": list(self.span),
            "quantiles": {str(q): v for q, v in self.quantiles.items()},
        }


def summarize(
    errors: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    *,
    span: tuple[float, float] | None = None,
) -> EDFSummary:
    """n, effective n, weighted mean, min, EDF area on ``span`` and quantiles of one group.

    ``span`` defaults to the group's own error range (widened by 1 if it is a single value);
    pass the pooled range when comparing groups, so their areas mean the same thing.
    """
    e = np.asarray(errors, dtype=float)
    w = _weights(e, weights)
    lo, hi = span if span is not None else (float(e.min()), float(e.max()))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return EDFSummary(
        n=int(e.size),
        n_effective=float(1.0 / np.sum(w**2)),
        mean=float(np.sum(w * e)),
        min=float(e[w > 0].min()),
        area=edf_area(e, w, lo, hi),
        span=(float(lo), float(hi)),
        quantiles={q: weighted_quantile(e, q, w) for q in QUANTILES},
    )


# -- complexity normalisation --------------------------------------------------------------------


@dataclass(frozen=True)
class Normalization:
    """Weights that give every group the same (pooled) FLOPs distribution.

    Attributes:
        weights: one per sample; each group's weights sum to 1 (0 for a sample outside the
            common support).
        edges: bin edges in log10(GFLOPs), ``bins + 1`` of them, over the pooled range.
        bin_index: each sample's bin.
        common: per bin, whether every group has a sample in it (the common support).
        target: the distribution every group is reweighted to, over the bins (sums to 1).
        dropped: per group, samples given weight 0 because their bin is outside the support.
    """

    weights: np.ndarray
    edges: np.ndarray
    bin_index: np.ndarray
    common: np.ndarray
    target: np.ndarray
    dropped: dict[Hashable, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges_log10_gflops": self.edges.tolist(),
            "common_bins": self.common.tolist(),
            "target": self.target.tolist(),
            "dropped": {str(k): v for k, v in self.dropped.items()},
        }


def default_bins(group_sizes: Sequence[int]) -> int:
    """sqrt of the smallest group's size, between 2 and 10.

    Every group needs a sample in a bin for that bin to count, so the smallest group decides
    how finely FLOPs can be resolved; sqrt(n) is the usual histogram rule of thumb.
    """
    smallest = min(group_sizes) if group_sizes else 1
    return int(min(10, max(2, round(math.sqrt(smallest)))))


def complexity_weights(
    gflops: Sequence[float] | np.ndarray,
    groups: Sequence[Hashable],
    *,
    bins: int | None = None,
) -> Normalization:
    """Reweight samples so every group has the pooled FLOPs distribution.

    log10(GFLOPs) is cut into ``bins`` equal bins over the pooled range. A bin counts only if
    every group has a sample in it (the *common support*): the target distribution is the
    pooled share of each common bin, renormalised to sum to 1, and a sample of group g in
    common bin b gets weight ``target[b] / n_gb`` (``n_gb``: g's samples in b). So each
    group's weighted histogram is exactly the target. Samples in bins some group lacks get
    weight 0 (counted in ``dropped``): a group cannot be shown at a complexity it never
    sampled, and inventing mass there would compare extrapolations.

    Args:
        gflops: FLOPs of every sample, > 0.
        groups: the group of every sample (any hashable: a choice value, a study name).
        bins: number of bins; ``None``: `default_bins` of the group sizes.

    Raises:
        AnalysisError: non-positive FLOPs, mismatched lengths, or no bin shared by all groups.
    """
    x = np.asarray(gflops, dtype=float)
    if x.ndim != 1 or len(groups) != x.size:
        raise AnalysisError(
            f"`len(groups) == len(gflops)` must hold, got {len(groups)} and {x.size}"
        )
    if x.size == 0 or np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise AnalysisError("gflops must be finite and > 0 for every sample")
    labels = list(dict.fromkeys(groups))
    sizes = [sum(1 for g in groups if g == lab) for lab in labels]
    nbins = default_bins(sizes) if bins is None else bins
    if nbins < 1:
        raise AnalysisError(f"bins must be >= 1, got {nbins}")
    logs = np.log10(x)
    lo, hi = float(logs.min()), float(logs.max())
    if hi <= lo:  # every sample has the same complexity: one bin holds them all
        lo, hi, nbins = lo - 0.5, hi + 0.5, 1
    edges = np.linspace(lo, hi, nbins + 1)
    idx = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, nbins - 1)
    member = np.array([labels.index(g) for g in groups])
    counts = np.zeros((len(labels), nbins))
    np.add.at(counts, (member, idx), 1.0)
    common = np.all(counts > 0, axis=0)
    if not common.any():
        raise AnalysisError(
            f"no FLOPs bin holds samples of every group ({', '.join(map(str, labels))}) with "
            f"{nbins} bins over {10**lo:.3g}-{10**hi:.3g} GFLOPs; the groups do not overlap in "
            f"complexity (use fewer bins, or compare without normalisation)"
        )
    pooled = counts.sum(axis=0)
    target = np.where(common, pooled, 0.0)
    target = target / target.sum()
    w = np.where(common[idx], target[idx] / np.maximum(counts[member, idx], 1.0), 0.0)
    dropped = {lab: int(np.sum((member == k) & ~common[idx])) for k, lab in enumerate(labels)}
    return Normalization(w, edges, idx, common, target, dropped)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


# -- EDF per group and per choice ----------------------------------------------------------------


@dataclass(frozen=True)
class GroupEDF:
    """One group's errors and EDFs, raw and complexity-normalised.

    Attributes:
        value: the group (a choice value, or a study name).
        errors, gflops: the group's samples.
        weights: complexity-normalisation weights (sum 1; 0 outside the common support), or
            ``None`` when normalisation was not asked for or not possible.
        raw: summary with equal weights.
        normalized: summary with ``weights``, or ``None``.
    """

    value: Any
    errors: np.ndarray
    gflops: np.ndarray
    weights: np.ndarray | None
    raw: EDFSummary
    normalized: EDFSummary | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _jsonable_value(self.value),
            "raw": self.raw.to_dict(),
            "normalized": self.normalized.to_dict() if self.normalized else None,
        }


def _jsonable_value(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


def group_edfs(
    errors: Sequence[float] | np.ndarray,
    gflops: Sequence[float] | np.ndarray,
    groups: Sequence[Hashable],
    *,
    normalize: bool = True,
    bins: int | None = None,
    sort: bool = True,
) -> tuple[list[GroupEDF], Normalization | None]:
    """Split samples into groups and summarise each, raw and (optionally) normalised.

    The area of every summary is taken on the pooled error range, so groups compare. When
    the groups share no FLOPs bin, normalisation is skipped (``None``) rather than failing:
    the raw comparison is still worth showing, and the caller can say why. Groups come out
    sorted by value, or in order of first appearance with ``sort=False``.
    """
    e = np.asarray(errors, dtype=float)
    x = np.asarray(gflops, dtype=float)
    span = (float(e.min()), float(e.max()))
    if not span[1] > span[0]:
        span = (span[0] - 0.5, span[1] + 0.5)
    norm = None
    if normalize:
        try:
            norm = complexity_weights(x, groups, bins=bins)
        except AnalysisError:
            norm = None
    labels = list(dict.fromkeys(groups))
    if sort:
        labels.sort(key=_sort_key)
    out = []
    for lab in labels:
        mask = np.array([g == lab for g in groups])
        w = None if norm is None else norm.weights[mask]
        out.append(
            GroupEDF(
                value=lab,
                errors=e[mask],
                gflops=x[mask],
                weights=w,
                raw=summarize(e[mask], span=span),
                normalized=summarize(e[mask], w, span=span) if w is not None else None,
            )
        )
    return out, norm


@dataclass(frozen=True)
class ChoiceEDF:
    """Error EDFs of a design space overall and split by one choice.

    Attributes:
        param: the Optuna parameter (``pool``) or derived value (``s1.width``).
        overall: every point (those without the parameter included).
        groups: one per value of the parameter, sorted by value.
        normalization: the complexity weights behind ``groups[i].normalized``, or ``None``.
        n_missing: points where the parameter does not apply (``pool`` of a one-stage net).
    """

    param: str
    overall: GroupEDF
    groups: list[GroupEDF]
    normalization: Normalization | None
    n_missing: int

    @property
    def values(self) -> list[Any]:
        return [g.value for g in self.groups]

    def to_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "overall": self.overall.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
            "normalization": self.normalization.to_dict() if self.normalization else None,
            "n_missing": self.n_missing,
        }


def edf_by_choice(
    pts: DesignPoints,
    param: str,
    *,
    normalize: bool = True,
    bins: int | None = None,
) -> ChoiceEDF:
    """EDFs overall and per value of ``param``, raw and complexity-normalised.

    Args:
        pts: the study's COMPLETE trials as arrays (`study_points`).
        param: a parameter name (``pool``, ``pos``, ``stem``, ``sr_kind``, ``head_mix``...) or
            a derived value (``depth``, ``s1.width``).
        normalize: also compute the complexity-normalised summaries.
        bins: FLOPs bins for the normalisation (``None``: `default_bins`).

    Raises:
        AnalysisError: no COMPLETE trial, or none with ``param``.
    """
    if len(pts) == 0:
        raise AnalysisError("no COMPLETE trial with an accuracy and GFLOPs to analyse")
    has = np.array([param in v for v in pts.values])
    if not has.any():
        raise AnalysisError(f"no COMPLETE trial has a value for {param!r}")
    overall, _ = group_edfs(pts.errors, pts.gflops, ["all"] * len(pts), normalize=False)
    sub = pts.subset(has)
    groups, norm = group_edfs(
        sub.errors,
        sub.gflops,
        [v[param] for v in sub.values],
        normalize=normalize,
        bins=bins,
    )
    return ChoiceEDF(param, overall[0], groups, norm, int((~has).sum()))


# -- trends of numeric choices -------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """Error against the value of a numeric choice, with bootstrap intervals.

    Attributes:
        param: the parameter.
        statistic: ``mean`` or ``median``.
        level: confidence level of the intervals (0.95).
        values: the distinct values, ascending.
        n: points per value.
        center: the statistic of the errors at each value.
        lo, hi: the percentile bootstrap interval of the statistic at each value (equal to
            ``center`` for a value seen once: one sample has no spread to resample).
        n_boot: bootstrap resamples.
        seed: the RNG seed, so a report is reproducible.
    """

    param: str
    statistic: str
    level: float
    values: list[Any]
    n: list[int]
    center: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_boot: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "statistic": self.statistic,
            "level": self.level,
            "values": [_jsonable_value(v) for v in self.values],
            "n": self.n,
            "center": self.center.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "n_boot": self.n_boot,
            "seed": self.seed,
        }


_STATISTICS = {"mean": np.mean, "median": np.median}


def bootstrap_ci(
    errors: Sequence[float] | np.ndarray,
    *,
    statistic: str = "mean",
    level: float = 0.95,
    n_boot: int = 1000,
    rng: np.random.Generator | int = 0,
) -> tuple[float, float, float]:
    """(statistic, lo, hi): the statistic and its percentile bootstrap interval.

    Resamples the errors with replacement ``n_boot`` times and takes the ``(1-level)/2`` and
    ``(1+level)/2`` percentiles of the statistic; no normality assumed, which matters for
    the skewed error distributions of small proxy runs.
    """
    if statistic not in _STATISTICS:
        raise AnalysisError(f"statistic must be one of {list(_STATISTICS)}, got {statistic!r}")
    if not 0 < level < 1:
        raise AnalysisError(f"`0 < level < 1` must hold, got level={level}")
    if n_boot < 1:
        raise AnalysisError(f"n_boot must be >= 1, got {n_boot}")
    e = np.asarray(errors, dtype=float)
    if e.size == 0:
        raise AnalysisError("cannot bootstrap an empty sample")
    fn = _STATISTICS[statistic]
    center = float(fn(e))
    if e.size == 1:
        return center, center, center
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    resamples = e[gen.integers(0, e.size, size=(n_boot, e.size))]
    stats = fn(resamples, axis=1)
    lo, hi = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return center, float(lo), float(hi)


def trend_by_value(
    pts: DesignPoints,
    param: str,
    *,
    statistic: str = "mean",
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> Trend:
    """The error statistic per value of a numeric ``param`` with bootstrap intervals.

    For per-stage depth (``s1.depth``), heads, head dim or width (``s1.width``): does error
    fall as the value grows, and is the step larger than the noise? Not complexity
    normalised on purpose: these choices *are* complexity, and normalising would remove the
    effect being measured. One seeded generator serves all values in order, so the result is
    a function of the data and ``seed``.

    Raises:
        AnalysisError: no point has ``param``, or a value is not a number.
    """
    has = [i for i, v in enumerate(pts.values) if param in v]
    if not has:
        raise AnalysisError(f"no COMPLETE trial has a value for {param!r}")
    by_value: dict[Any, list[float]] = {}
    for i in has:
        v = pts.values[i][param]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise AnalysisError(
                f"{param!r} is not numeric (value {v!r}); use edf_by_choice for categories"
            )
        by_value.setdefault(v, []).append(float(pts.errors[i]))
    rng = np.random.default_rng(seed)
    values = sorted(by_value)
    rows = [
        bootstrap_ci(by_value[v], statistic=statistic, level=level, n_boot=n_boot, rng=rng)
        for v in values
    ]
    center, lo, hi = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return Trend(
        param,
        statistic,
        level,
        values,
        [len(by_value[v]) for v in values],
        center,
        lo,
        hi,
        n_boot,
        seed,
    )


# -- comparing design spaces ---------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Two or more design spaces (studies) compared by their error EDFs.

    Attributes:
        groups: one per design space, in the order given; ``value`` is its name.
        normalization: the weights giving all of them the pooled FLOPs distribution, or
            ``None`` when their FLOPs ranges do not overlap.
        thresholds: error thresholds (%) the fractions are taken at.
        fractions: per name, per threshold, the share of models with error <= threshold,
            ``raw`` and ``normalized`` (``None`` without normalisation).
    """

    groups: list[GroupEDF]
    normalization: Normalization | None
    thresholds: list[float]
    fractions: dict[str, dict[float, dict[str, float | None]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "normalization": self.normalization.to_dict() if self.normalization else None,
            "thresholds": self.thresholds,
            "fractions": {
                name: {str(t): v for t, v in per.items()} for name, per in self.fractions.items()
            },
        }


def compare_points(
    named: Mapping[str, DesignPoints],
    *,
    thresholds: Sequence[float] | None = None,
    bins: int | None = None,
) -> Comparison:
    """Compare design spaces: EDFs normalised to a common FLOPs distribution, and the share
    of each space's models under a few error thresholds.

    Args:
        named: design points per space name (at least two, each non-empty).
        thresholds: error thresholds (%); ``None``: the pooled 10/25/50 % error quantiles,
            rounded to 0.1, so the table asks "how often does each space reach the pooled
            best tenth, quarter, half".
        bins: FLOPs bins for the normalisation (``None``: `default_bins`).
    """
    if len(named) < 2:
        raise AnalysisError(f"a comparison needs at least two design spaces, got {len(named)}")
    for name, pts in named.items():
        if len(pts) == 0:
            raise AnalysisError(f"{name}: no COMPLETE trial with an accuracy and GFLOPs")
    errors = np.concatenate([p.errors for p in named.values()])
    flops = np.concatenate([p.gflops for p in named.values()])
    labels = [name for name, p in named.items() for _ in range(len(p))]
    groups, norm = group_edfs(errors, flops, labels, bins=bins, sort=False)
    if thresholds is None:
        thresholds = sorted({round(weighted_quantile(errors, q), 1) for q in QUANTILES})
    ts = [float(t) for t in thresholds]
    fractions: dict[str, dict[float, dict[str, float | None]]] = {}
    for g in groups:
        _, raw = error_edf(g.errors, None, ts)
        normed = error_edf(g.errors, g.weights, ts)[1] if g.weights is not None else None
        fractions[g.value] = {
            t: {
                "raw": float(raw[i]),
                "normalized": None if normed is None else float(normed[i]),
            }
            for i, t in enumerate(ts)
        }
    return Comparison(groups, norm, ts, fractions)
