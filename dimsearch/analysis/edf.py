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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dimsearch.analysis.points import AnalysisError, DesignPoints

__all__ = [
    "WEIGHTINGS",
    "BandedEDFs",
    "ChoiceEDF",
    "Comparison",
    "EDFSummary",
    "GroupEDF",
    "Normalization",
    "Trend",
    "banded_edfs",
    "bootstrap_ci",
    "compare_points",
    "complexity_weights",
    "edf_bands_by_choice",
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
    """Weights that give every group the same complexity (FLOPs or params) distribution.

    Attributes:
        weights: one per sample; each group's weights sum to 1 (0 for a sample outside the
            common support).
        edges: bin edges in log10(complexity), ``bins + 1`` of them, over the pooled range.
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


TARGETS = ("uniform", "pooled")


def complexity_weights(
    gflops: Sequence[float] | np.ndarray,
    groups: Sequence[Hashable],
    *,
    bins: int | None = None,
    target: str = "uniform",
    edges: np.ndarray | None = None,
    what: str = "gflops",
) -> Normalization:
    """Reweight samples so every group has the same complexity distribution.

    log10(complexity) is cut into ``bins`` equal bins over the pooled range. A bin counts only
    if every group has a sample in it (the *common support*). A sample of group g in common
    bin b gets weight ``target[b] / n_gb`` (``n_gb``: g's samples in b), so each group's
    weighted histogram is exactly the target:

    - ``uniform`` (pycls's rule, the default): every common bin weighs the same, i.e. a
      sample's weight is 1 / (its group's count in its bin), normalised within the group;
      the groups are compared as if complexity were log-uniform over the shared range.
    - ``pooled``: the pooled share of each common bin, renormalised; keeps more weight where
      the samples are, so fewer effective samples are lost to sparse bins.

    Samples in bins some group lacks get weight 0 (counted in ``dropped``): a group cannot be
    shown at a complexity it never sampled, and inventing mass there would compare
    extrapolations.

    Args:
        gflops: complexity of every sample (GFLOPs, or parameters with ``what="params"``), > 0.
        groups: the group of every sample (any hashable: a choice value, a study name).
        bins: number of bins; ``None``: `default_bins` of the group sizes.
        target: ``uniform`` or ``pooled`` (above).
        edges: bin edges in log10 units to use instead of cutting the pooled range (a
            bootstrap replicate keeps the edges of the full sample); ``bins`` is then ignored.
        what: the complexity's name, for messages.

    Raises:
        AnalysisError: non-positive complexity, mismatched lengths, or no bin shared by all
            groups.
    """
    if target not in TARGETS:
        raise AnalysisError(f"target must be one of {list(TARGETS)}, got {target!r}")
    x = np.asarray(gflops, dtype=float)
    if x.ndim != 1 or len(groups) != x.size:
        raise AnalysisError(
            f"`len(groups) == len({what})` must hold, got {len(groups)} and {x.size}"
        )
    if x.size == 0 or np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise AnalysisError(f"{what} must be finite and > 0 for every sample")
    labels = list(dict.fromkeys(groups))
    sizes = [sum(1 for g in groups if g == lab) for lab in labels]
    logs = np.log10(x)
    if edges is None:
        nbins = default_bins(sizes) if bins is None else bins
        if nbins < 1:
            raise AnalysisError(f"bins must be >= 1, got {nbins}")
        lo, hi = float(logs.min()), float(logs.max())
        if hi <= lo:  # every sample has the same complexity: one bin holds them all
            lo, hi, nbins = lo - 0.5, hi + 0.5, 1
        edges = np.linspace(lo, hi, nbins + 1)
    else:
        edges = np.asarray(edges, dtype=float)
        nbins = edges.size - 1
        lo, hi = float(edges[0]), float(edges[-1])
    idx = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, nbins - 1)
    member = np.array([labels.index(g) for g in groups])
    counts = np.zeros((len(labels), nbins))
    np.add.at(counts, (member, idx), 1.0)
    common = np.all(counts > 0, axis=0)
    if not common.any():
        raise AnalysisError(
            f"no {what} bin holds samples of every group ({', '.join(map(str, labels))}) with "
            f"{nbins} bins over {10**lo:.3g}-{10**hi:.3g} {what}; the groups do not overlap in "
            f"complexity (use fewer bins, or compare without normalisation)"
        )
    mass = counts.sum(axis=0) if target == "pooled" else np.ones(nbins)
    share = np.where(common, mass, 0.0)
    share = share / share.sum()
    w = np.where(common[idx], share[idx] / np.maximum(counts[member, idx], 1.0), 0.0)
    dropped = {lab: int(np.sum((member == k) & ~common[idx])) for k, lab in enumerate(labels)}
    return Normalization(w, edges, idx, common, share, dropped)


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
        normalization: the weights giving all of them one FLOPs distribution, or
            ``None`` when their FLOPs ranges do not overlap.
        thresholds: error thresholds (%) the fractions are taken at.
        fractions: per name, per threshold, the share of models with error <= threshold,
            ``raw`` and ``normalized`` (``None`` without normalisation).
        bands: the spaces' EDFs with bootstrap bands, plain and normalised by GFLOPs and
            by params (`banded_edfs`, one per weighting).
    """

    groups: list[GroupEDF]
    normalization: Normalization | None
    thresholds: list[float]
    fractions: dict[str, dict[float, dict[str, float | None]]]
    bands: list[BandedEDFs] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "normalization": self.normalization.to_dict() if self.normalization else None,
            "thresholds": self.thresholds,
            "fractions": {
                name: {str(t): v for t, v in per.items()} for name, per in self.fractions.items()
            },
            "bands": [b.to_dict() for b in self.bands],
        }


def compare_points(
    named: Mapping[str, DesignPoints],
    *,
    thresholds: Sequence[float] | None = None,
    bins: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Comparison:
    """Compare design spaces: EDFs normalised to a common FLOPs distribution, and the share
    of each space's models under a few error thresholds.

    Args:
        named: design points per space name (at least two, each non-empty).
        thresholds: error thresholds (%); ``None``: the pooled 10/25/50 % error quantiles,
            rounded to 0.1, so the table asks "how often does each space reach the pooled
            best tenth, quarter, half".
        bins: FLOPs bins for the normalisation (``None``: `default_bins`).
        n_boot, seed: the bootstrap of the bands.
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
    params = [p.params if p.params is not None else np.full(len(p), np.nan) for p in named.values()]
    cx = {"plain": None, "gflops": flops, "params": np.concatenate(params)}
    bands = []
    for wt in WEIGHTINGS:
        if wt == "params" and not np.all(np.isfinite(cx["params"])):
            note = "no parameter count for every model: not normalised by params"
            grid = np.unique(errors)
            bands.append(BandedEDFs("study", wt, grid, [], ts, [], 0.95, n_boot, seed, note=note))
            continue
        bands.append(
            banded_edfs(
                errors,
                labels,
                complexity=cx[wt],
                weighting=wt,
                param="study",
                thresholds=ts,
                bins=bins,
                n_boot=n_boot,
                seed=seed,
                sort=False,
            )
        )
    return Comparison(groups, norm, ts, fractions, bands)


# -- EDFs with bootstrap bands ---------------------------------------------------------------------

# How the models of a group are weighted: equally, or complexity-normalised by GFLOPs or by
# parameter count (pycls normalises by either; a choice can trade one for the other).
WEIGHTINGS = ("plain", "gflops", "params")
# Error thresholds of the text tables when none are given: the pooled quantiles, "how often
# does each group reach the pooled best tenth, quarter, half".
SHARE_QUANTILES = QUANTILES


@dataclass(frozen=True)
class GroupBand:
    """One group's error EDF with its pointwise bootstrap band, and the numbers read off it.

    Attributes:
        value: the group (a choice value, a study name).
        n: architectures in the group.
        n_effective: Kish's effective size of its weights (``n`` when plain).
        f, lo, hi: the EDF on the shared grid and its band (NaN where a replicate could
            not weight the group, e.g. its bins lost to a resample; rare).
        median: ``(median error, lo, hi)``: the weighted median and its bootstrap interval.
        shares: per threshold, ``(F(t), lo, hi)``: the share of models with error <= t.
    """

    value: Any
    n: int
    n_effective: float
    f: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    median: tuple[float, float, float]
    shares: dict[float, tuple[float, float, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _jsonable_value(self.value),
            "n": self.n,
            "n_effective": self.n_effective,
            "F": self.f.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "median": list(self.median),
            "shares": {str(t): list(v) for t, v in self.shares.items()},
        }


@dataclass(frozen=True)
class Separation:
    """Where two groups' bands do not overlap.

    ``a`` and ``b`` are the pair, ``a`` the one whose band lies above (more of its models under
    the error) at more grid errors. ``above``: ``(count, lo, hi)`` of those errors; ``below``:
    the same where ``b``'s band lies above ``a``'s (the curves cross), or ``None``.
    """

    a: Any
    b: Any
    above: tuple[int, float, float]
    below: tuple[int, float, float] | None

    def text(self, total: int) -> str:
        n, lo, hi = self.above
        line = f"{self.a} over {self.b} at {lo:.2f}-{hi:.2f} % ({n} of {total} errors"
        if self.below:
            m, blo, bhi = self.below
            line += f"; reverse at {blo:.2f}-{bhi:.2f} %, {m} errors"
        return line + ")"

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": _jsonable_value(self.a),
            "b": _jsonable_value(self.b),
            "above": list(self.above),
            "below": None if self.below is None else list(self.below),
        }


@dataclass(frozen=True)
class BandedEDFs:
    """Error EDFs of some groups on one grid, each with its bootstrap band.

    Attributes:
        param: what split the models (``pool``, ``pos``, or ``study`` for a comparison).
        weighting: ``plain``, ``gflops`` or ``params`` (`WEIGHTINGS`).
        grid: the pooled distinct errors, where every EDF and band is evaluated.
        groups: one per value, sorted by value (or in given order).
        thresholds: the errors the shares are read at.
        separations: for each pair of groups whose bands separate somewhere.
        level, n_boot, seed: the bootstrap (resampling architectures within each group).
        dropped: per group, models outside the common complexity support (weight 0).
        note: why the weighting could not be applied (then ``groups`` is empty), or ``""``.
    """

    param: str
    weighting: str
    grid: np.ndarray
    groups: list[GroupBand]
    thresholds: list[float]
    separations: list[Separation]
    level: float
    n_boot: int
    seed: int
    dropped: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def verdict(self) -> str:
        """One line: which groups' bands separate, and where; or that none do."""
        if self.note:
            return self.note
        if len(self.groups) < 2:
            return "one group: nothing to compare"
        pct = f"{self.level:.0%}"
        if not self.separations:
            return f"the {pct} bands overlap at every error: no difference resolved"
        parts = [x.text(self.grid.size) for x in self.separations]
        pairs = len(self.groups) * (len(self.groups) - 1) // 2
        rest = pairs - len(self.separations)
        return (
            f"{pct} bands separate (pointwise, no multiplicity correction): "
            + "; ".join(parts)
            + (f"; the other {rest} pair(s) overlap everywhere" if rest else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "weighting": self.weighting,
            "grid": self.grid.tolist(),
            "groups": [g.to_dict() for g in self.groups],
            "thresholds": self.thresholds,
            "separations": [x.to_dict() for x in self.separations],
            "verdict": self.verdict(),
            "level": self.level,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "dropped": self.dropped,
            "note": self.note,
        }


def _median(e: np.ndarray, w: np.ndarray | None) -> float:
    if w is not None and not np.sum(w) > 0:
        return float("nan")
    return weighted_quantile(e, 0.5, w)


def banded_edfs(
    errors: Sequence[float] | np.ndarray,
    groups: Sequence[Hashable],
    *,
    complexity: Sequence[float] | np.ndarray | None = None,
    weighting: str = "plain",
    param: str = "",
    thresholds: Sequence[float] | None = None,
    bins: int | None = None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    sort: bool = True,
) -> BandedEDFs:
    """Error EDFs of each group with pointwise percentile-bootstrap bands.

    The bootstrap (`dimsearch.stats.bootstrap_band`) resamples architectures with
    replacement within each group; with a complexity, every replicate recomputes the
    normalisation weights (`complexity_weights`, pycls's uniform target, on the bins of the
    full sample), so the band also carries the uncertainty of the reweighting. Each group's
    EDF, median and shares at ``thresholds`` come from the same replicates.

    Args:
        errors: one error (%) per architecture.
        groups: the group of each.
        complexity: GFLOPs or parameter count of each (needed unless ``weighting="plain"``).
        weighting: ``plain``, ``gflops`` or ``params``; only names the complexity here.
        param: what the groups are values of (for labels).
        thresholds: errors to read shares at (``None``: the pooled 10/25/50 % quantiles,
            rounded to 0.1).
        bins: complexity bins (``None``: `default_bins`).
        level, n_boot, seed: the bootstrap.
        sort: sort groups by value (else in order of first appearance).
    """
    from dimsearch.stats import bootstrap_band

    if weighting not in WEIGHTINGS:
        raise AnalysisError(f"weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}")
    e = np.asarray(errors, dtype=float)
    g = list(groups)
    if e.ndim != 1 or e.size == 0 or len(g) != e.size:
        raise AnalysisError(
            f"`len(groups) == len(errors) > 0` must hold, got {len(g)} and {e.size}"
        )
    labels = list(dict.fromkeys(g))
    if sort:
        labels.sort(key=_sort_key)
    if thresholds is None:
        thresholds = sorted({round(weighted_quantile(e, q), 1) for q in SHARE_QUANTILES})
    ts = [float(t) for t in thresholds]
    grid = np.unique(e)
    common = dict(param=param, weighting=weighting, grid=grid, thresholds=ts, level=level)
    common.update(n_boot=n_boot, seed=seed)
    edges, norm = None, None
    c = None
    if weighting != "plain":
        if complexity is None:
            raise AnalysisError(f"weighting by {weighting} needs the {weighting} of every model")
        c = np.asarray(complexity, dtype=float)
        try:
            norm = complexity_weights(c, g, bins=bins, what=weighting)
        except AnalysisError as err:
            return BandedEDFs(groups=[], separations=[], note=str(err), **common)
        edges = norm.edges
    members = {lab: np.array([x == lab for x in g]) for lab in labels}
    width = grid.size + 1 + len(ts)

    def stat(idx: np.ndarray) -> np.ndarray:
        ei, gi = e[idx], [g[i] for i in idx]
        w = None
        if c is not None:
            try:
                w = complexity_weights(c[idx], gi, edges=edges, what=weighting).weights
            except AnalysisError:
                return np.full(width * len(labels), np.nan)
        out = []
        for lab in labels:
            m = np.array([x == lab for x in gi])
            wm = None if w is None else w[m]
            if wm is not None and not np.sum(wm) > 0:
                out.append(np.full(width, np.nan))
                continue
            f = error_edf(ei[m], wm, grid)[1]
            sh = error_edf(ei[m], wm, ts)[1]
            out.append(np.concatenate([f, [_median(ei[m], wm)], sh]))
        return np.concatenate(out)

    lo, hi = bootstrap_band(g, stat, n_boot=n_boot, level=level, seed=seed)
    center = stat(np.arange(e.size))
    bands = []
    for k, lab in enumerate(labels):
        sl = slice(k * width, (k + 1) * width)
        cf, cl, ch = center[sl], lo[sl], hi[sl]
        m = members[lab]
        w = None if norm is None else norm.weights[m]
        n_eff = float(m.sum()) if w is None else float(w.sum() ** 2 / np.sum(w**2))
        n = grid.size
        bands.append(
            GroupBand(
                value=lab,
                n=int(m.sum()),
                n_effective=n_eff,
                f=cf[:n],
                lo=cl[:n],
                hi=ch[:n],
                median=(float(cf[n]), float(cl[n]), float(ch[n])),
                shares={
                    t: (float(cf[n + 1 + i]), float(cl[n + 1 + i]), float(ch[n + 1 + i]))
                    for i, t in enumerate(ts)
                },
            )
        )
    dropped = {} if norm is None else {str(k): v for k, v in norm.dropped.items() if v}
    return BandedEDFs(
        groups=bands, separations=_separations(bands, grid), dropped=dropped, **common
    )


def _separations(bands: list[GroupBand], grid: np.ndarray) -> list[Separation]:
    """Each pair of groups whose bands are apart at some grid error (pointwise)."""

    def apart(x: GroupBand, y: GroupBand) -> tuple[int, float, float] | None:
        with np.errstate(invalid="ignore"):
            where = x.lo > y.hi
        if not where.any():
            return None
        at = grid[where]
        return int(where.sum()), float(at.min()), float(at.max())

    out = []
    for i, x in enumerate(bands):
        for y in bands[i + 1 :]:
            xy, yx = apart(x, y), apart(y, x)
            if xy is None and yx is None:
                continue
            if xy is None or (yx is not None and yx[0] > xy[0]):
                out.append(Separation(y.value, x.value, yx, xy))
            else:
                out.append(Separation(x.value, y.value, xy, yx))
    return sorted(out, key=lambda x: -x.above[0])


def edf_bands_by_choice(
    pts: DesignPoints,
    param: str,
    *,
    weightings: Sequence[str] = WEIGHTINGS,
    thresholds: Sequence[float] | None = None,
    bins: int | None = None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[BandedEDFs]:
    """`banded_edfs` per value of ``param``, once per weighting (plain, by GFLOPs, by params).

    Points without ``param`` are left out (it does not apply to them); a weighting whose
    complexity some point lacks (params of an older study) comes back with a ``note``.
    Thresholds default to the pooled quantiles of the points that have ``param``, shared by
    every weighting so the tables line up.

    Raises:
        AnalysisError: no point, or none with ``param``.
    """
    if len(pts) == 0:
        raise AnalysisError("no architecture with an accuracy and GFLOPs to analyse")
    has = np.array([param in v for v in pts.values])
    if not has.any():
        raise AnalysisError(f"no architecture has a value for {param!r}")
    sub = pts.subset(has)
    groups = [v[param] for v in sub.values]
    if thresholds is None:
        thresholds = sorted({round(weighted_quantile(sub.errors, q), 1) for q in SHARE_QUANTILES})
    out = []
    for wt in weightings:
        cx = {"plain": None, "gflops": sub.gflops, "params": sub.params}.get(wt)
        if wt == "params" and (cx is None or not np.all(np.isfinite(cx))):
            grid = np.unique(sub.errors)
            out.append(
                BandedEDFs(
                    param,
                    wt,
                    grid,
                    [],
                    list(thresholds),
                    [],
                    level,
                    n_boot,
                    seed,
                    note="no parameter count for every model: not normalised by params",
                )
            )
            continue
        out.append(
            banded_edfs(
                sub.errors,
                groups,
                complexity=cx,
                weighting=wt,
                param=param,
                thresholds=thresholds,
                bins=bins,
                level=level,
                n_boot=n_boot,
                seed=seed,
            )
        )
    return out
