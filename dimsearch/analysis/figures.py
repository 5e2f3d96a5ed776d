"""The report's figures, each a PNG plus the data drawn in it.

Every ``plot_*`` function saves one PNG and returns a dataclass holding what it drew (points,
labels, curves, notes) with a ``to_dict()``, so the report can write ``data.json`` next to the
images and tests can check what a figure shows without reading pixels.

matplotlib is used through `matplotlib.figure.Figure` and its Agg canvas directly, never
pyplot: no global figure state, no display backend, safe in a headless worker.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from optuna.trial import FrozenTrial, TrialState

from dimsearch._values import is_number
from dimsearch.analysis.edf import (
    BandedEDFs,
    ChoiceEDF,
    Comparison,
    Trend,
    edf_bands_by_choice,
    edf_by_choice,
    error_edf,
    summarize,
    trend_by_value,
)
from dimsearch.analysis.hypervolume import HypervolumeHistory, hypervolume_history
from dimsearch.analysis.points import AnalysisError, DesignPoints, accuracy_index
from dimsearch.search.study import Attr, front_trials, nondominated, number_attr, objectives_of
from dimsearch.zoo import label as seed_label

__all__ = [
    "ChoiceFigure",
    "CompareFigure",
    "EDFFigure",
    "FrontFigure",
    "HypervolumeFigure",
    "ImportanceFigure",
    "TrendFigure",
    "plot_choice_edf",
    "plot_compare",
    "plot_edf",
    "plot_fronts",
    "plot_hypervolume",
    "plot_importances",
    "plot_trends",
]

DPI = 110
# Fewer completed trials than this and importances say more about noise than about the space.
MIN_TRIALS_FOR_IMPORTANCE = 5
# Axis quantities the front plots can put on x: label, where the value lives.
FRONT_AXES = {"gflops": ("GFLOPs", Attr.GFLOPS), "latency_ms": ("latency (ms)", Attr.LATENCY_MS)}


def _figure(width: float = 6.4, height: float = 4.4, **kwargs: Any) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # constrained layout already fits the margins
    return path


def _label(t: FrozenTrial) -> str:
    return seed_label(t.user_attrs.get(Attr.SEED))


def _axis_value(t: FrozenTrial, key: str, names: list[str]) -> float | None:
    attr = FRONT_AXES[key][1]
    v = number_attr(t.user_attrs, attr)
    if v is None and key in names and t.values is not None:
        v = t.values[names.index(key)]
    return float(v) if is_number(v) else None


# -- Pareto fronts -------------------------------------------------------------------------------


@dataclass
class FrontFigure:
    """Accuracy against one cost, every COMPLETE trial, the front, the seeds named.

    Attributes:
        path: the PNG.
        x: the cost on the x axis (``gflops`` or ``latency_ms``).
        points: one per trial drawn: ``number``, ``x``, ``accuracy``, ``label`` (zoo label of
            a seed, else ""), ``front`` (on the study's Pareto front over all objectives),
            ``front_2d`` (on the front of just this pair, the staircase drawn).
        missing: COMPLETE trials without a value for ``x`` (not drawn).
    """

    path: Path
    x: str
    points: list[dict[str, Any]]
    missing: int = 0

    @property
    def labels(self) -> list[str]:
        """Labels written on the plot (the seeds')."""
        return [p["label"] for p in self.points if p["label"]]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path.name, "x": self.x, "points": self.points, "missing": self.missing}


def plot_fronts(
    study: optuna.Study, out_dir: Path, *, axes: Sequence[str] = ("gflops", "latency_ms")
) -> list[FrontFigure]:
    """Accuracy vs GFLOPs and accuracy vs latency: ``front_<x>.png`` in ``out_dir``.

    All COMPLETE trials are faint dots; the study's Pareto trials (over all its objectives)
    are solid; the staircase is the front of the pair drawn; seeds are stars with their zoo
    label (PiT-Ti, ResT-Small). An axis no trial has a value for is skipped.
    """
    names = objectives_of(study).names
    acc = accuracy_index(study)
    done = [
        t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.values
    ]
    on_front = {t.number for t in front_trials(study)}
    out = []
    for key in axes:
        pts, missing = [], 0
        for t in done:
            x = _axis_value(t, key, names)
            if x is None:
                missing += 1
                continue
            pts.append(
                {
                    "number": t.number,
                    "x": x,
                    "accuracy": float(t.values[acc]),
                    "label": _label(t),
                    "front": t.number in on_front,
                }
            )
        if not pts:
            continue
        xy = np.array([[p["x"], -p["accuracy"]] for p in pts])
        for p, nd in zip(pts, nondominated(xy), strict=True):
            p["front_2d"] = bool(nd)
        path = _draw_front(pts, key, Path(out_dir) / f"front_{key}.png", study.study_name)
        out.append(FrontFigure(path, key, pts, missing))
    return out


def _draw_front(pts: list[dict[str, Any]], key: str, path: Path, title: str) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    x = np.array([p["x"] for p in pts])
    y = np.array([p["accuracy"] for p in pts])
    front = np.array([p["front"] for p in pts])
    ax.scatter(x, y, s=14, color="0.55", alpha=0.35, label=f"complete ({len(pts)})", zorder=1)
    ax.scatter(
        x[front], y[front], s=30, color="C0", label=f"Pareto front ({front.sum()})", zorder=3
    )
    stair = sorted((p["x"], p["accuracy"]) for p in pts if p["front_2d"])
    if stair:
        sx, sy = zip(*stair, strict=True)
        ax.step(sx, sy, where="post", color="C0", lw=1.2, alpha=0.8, zorder=2)
    seeds = [p for p in pts if p["label"]]
    if seeds:
        ax.scatter(
            [p["x"] for p in seeds],
            [p["accuracy"] for p in seeds],
            s=90,
            marker="*",
            color="C3",
            edgecolor="k",
            linewidth=0.5,
            label="seeds",
            zorder=4,
        )
        for p in seeds:
            ax.annotate(
                p["label"],
                (p["x"], p["accuracy"]),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=8,
                color="C3",
            )
    if x.min() > 0 and x.max() / x.min() > 8:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(FRONT_AXES[key][0] + " (lower is better)")
    ax.set_ylabel("proxy top-1 accuracy (%)")
    ax.set_title(f"{title}: accuracy vs {FRONT_AXES[key][0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


# -- hypervolume ---------------------------------------------------------------------------------


@dataclass
class HypervolumeFigure:
    """Hypervolume against trial number and against cumulative compute."""

    path: Path
    history: HypervolumeHistory

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path.name, **self.history.to_dict()}


def plot_hypervolume(
    study: optuna.Study, path: Path, *, reference: Sequence[float] | None = None
) -> HypervolumeFigure:
    """Two panels: hypervolume vs trial number, and vs cumulative proxy-training hours.

    ``reference``: see `hypervolume_history` (default: worst completed values padded by 10 %
    of each objective's range; the reference is printed on the figure).
    """
    names = objectives_of(study).names
    hist = hypervolume_history(study, names, reference=reference)
    fig = _figure(10, 3.8)
    a1, a2 = fig.subplots(1, 2)
    a1.step(hist.numbers, hist.hypervolume, where="post", color="C0")
    a1.set_xlabel("trial number")
    a1.set_ylabel("hypervolume")
    hours = np.array(hist.seconds) / 3600.0
    a2.step(hours, hist.hypervolume, where="post", color="C2")
    a2.set_xlabel("cumulative proxy-training time (h)")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    ref = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, hist.reference, strict=True))
    fig.suptitle(f"{study.study_name}: hypervolume (reference {ref})", fontsize=10)
    return HypervolumeFigure(_save(fig, path), hist)


# -- parameter importances -----------------------------------------------------------------------


@dataclass
class ImportanceFigure:
    """PED-ANOVA importances of the parameters, one panel per objective.

    Attributes:
        path: the PNG, or ``None`` when no objective could be evaluated.
        importances: per objective name, parameter -> importance (normalised to sum 1).
        notes: why an objective (or the whole figure) was skipped.
    """

    path: Path | None
    importances: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path.name if self.path else None,
            "importances": self.importances,
            "notes": self.notes,
        }


def param_importances(study: optuna.Study) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Importances per objective and the notes on what was skipped.

    Uses Optuna's default evaluator (PED-ANOVA: which parameter values the best 10 % of
    trials concentrate on; needs no scikit-learn, and handles conditional parameters such as
    ``s4.depth``). Maximised objectives are negated because PED-ANOVA treats low as good.
    Parameters with one value among the COMPLETE trials are left out (nothing to attribute).
    """
    from optuna.importance import get_param_importances

    objectives = objectives_of(study)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, [
            f"importances skipped: {len(done)} completed trial(s), at least "
            f"{MIN_TRIALS_FOR_IMPORTANCE} are needed"
        ]
    seen: dict[str, set[str]] = {}
    for t in done:
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    params = sorted(k for k, vals in seen.items() if len(vals) > 1)
    constant = sorted(k for k, vals in seen.items() if len(vals) == 1)
    notes = []
    if constant:
        notes.append(f"left out (one value in every completed trial): {', '.join(constant)}")
    if not params:
        return {}, [*notes, "importances skipped: no parameter takes two values"]
    out: dict[str, dict[str, float]] = {}
    for i, (name, d) in enumerate(zip(objectives.names, objectives.directions, strict=True)):
        sign = -1.0 if d == "maximize" else 1.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PED-ANOVA warns that it minimises `target`
                imp = get_param_importances(
                    study,
                    params=params,
                    target=lambda t, i=i, sign=sign: sign * t.values[i],
                )
        # the estimators are third-party and these samples small: a report must not die on
        # one, it says which objective was skipped and why
        except Exception as err:
            notes.append(f"{name}: skipped ({type(err).__name__}: {err})")
            continue
        out[name] = {k: float(v) for k, v in imp.items()}
    return out, notes


def plot_importances(study: optuna.Study, path: Path) -> ImportanceFigure:
    """Horizontal bars of `param_importances`, one panel per objective."""
    imps, notes = param_importances(study)
    if not imps:
        return ImportanceFigure(None, {}, notes)
    params = sorted({p for v in imps.values() for p in v})
    mean = {p: np.mean([v.get(p, 0.0) for v in imps.values()]) for p in params}
    params.sort(key=lambda p: mean[p])
    fig = _figure(3.4 * len(imps) + 1.2, 0.32 * len(params) + 1.4)
    axes = np.atleast_1d(fig.subplots(1, len(imps), sharey=True))
    for k, (ax, (name, v)) in enumerate(zip(axes, imps.items(), strict=True)):
        ax.barh(params, [v.get(p, 0.0) for p in params], color=f"C{k}")
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, max(1e-9, max(v.values(), default=0)) * 1.15)
        ax.grid(axis="x", alpha=0.3)
    axes[0].tick_params(axis="y", labelsize=8)
    fig.suptitle("parameter importances (PED-ANOVA, top 10 % of trials)", fontsize=10)
    return ImportanceFigure(_save(fig, path), imps, notes)


# -- EDFs ----------------------------------------------------------------------------------------


def _steps(errors: np.ndarray, weights: np.ndarray | None) -> tuple[list[float], list[float]]:
    """An EDF as a drawable staircase starting at F=0 left of the smallest error.

    Samples of weight 0 (outside the common FLOPs support) are not steps of the curve, so
    they are left out rather than drawn as flat stretches at F=0.
    """
    if weights is not None:
        keep = np.asarray(weights) > 0
        errors, weights = np.asarray(errors)[keep], np.asarray(weights)[keep]
    grid, f = error_edf(errors, weights)
    return [float(grid[0]), *grid.tolist()], [0.0, *f.tolist()]


@dataclass
class EDFFigure:
    """The error EDF of every COMPLETE trial, seeds marked.

    Attributes:
        path: the PNG.
        curve: ``{"error": [...], "F": [...]}`` (a staircase, F=0 first).
        summary: `summarize` of the errors.
        seeds: ``{"label", "error"}`` per seed, drawn as vertical markers.
        excluded: trials not drawn, by reason (see `design_points`).
    """

    path: Path
    curve: dict[str, list[float]]
    summary: dict[str, Any]
    seeds: list[dict[str, Any]]
    excluded: dict[str, int]

    @property
    def labels(self) -> list[str]:
        return [s["label"] for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path.name,
            "curve": self.curve,
            "summary": self.summary,
            "seeds": self.seeds,
            "excluded": self.excluded,
        }


def plot_edf(points: DesignPoints, path: Path, *, title: str = "") -> EDFFigure:
    """The error EDF of the whole design space (raw: every sample weighs the same)."""
    if len(points) == 0:
        raise AnalysisError("no COMPLETE trial with an accuracy and GFLOPs to plot")
    xs, ys = _steps(points.errors, None)
    seeds = [
        {"label": lab, "error": float(e), "number": int(n)}
        for lab, e, n in zip(points.labels, points.errors, points.numbers, strict=True)
        if lab
    ]
    fig = _figure()
    ax = fig.add_subplot()
    ax.step(xs, ys, where="post", color="C0", label=f"all complete (n={len(points)})")
    for k, s in enumerate(seeds):
        ax.axvline(s["error"], color="C3", ls=":", lw=1)
        ax.annotate(
            s["label"],
            (s["error"], 0.04 + 0.07 * (k % 4)),
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=8,
            color="C3",
        )
    ax.set_xlabel("proxy error (%)")
    ax.set_ylabel("cumulative share of models")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "error EDF")
    summary = summarize(points.errors).to_dict()
    return EDFFigure(_save(fig, path), {"error": xs, "F": ys}, summary, seeds, points.excluded)


@dataclass
class ChoiceFigure:
    """EDFs split by one categorical choice with 95 % bootstrap bands: plain, normalised by
    GFLOPs, normalised by parameter count (one panel each).

    Attributes:
        path: the PNG.
        choice: the summaries (`ChoiceEDF`: mean, quantiles, area, raw and FLOPs-normalised).
        bands: the banded EDFs, one per weighting (`edf_bands_by_choice`).
        curves: per value (as a string), ``raw`` and ``normalized`` staircases
            (``{"error", "F"}``; ``normalized`` is ``None`` without normalisation).
        note: why normalisation is missing, if it is.
    """

    path: Path
    choice: ChoiceEDF
    bands: list[BandedEDFs]
    curves: dict[str, dict[str, dict[str, list[float]] | None]]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path.name,
            **self.choice.to_dict(),
            "bands": [b.to_dict() for b in self.bands],
            "curves": self.curves,
            "note": self.note,
        }


_WEIGHTING_TITLES = {
    "plain": "plain",
    "gflops": "normalised by GFLOPs",
    "params": "normalised by params",
}


def draw_bands(ax: Any, bands: BandedEDFs) -> None:
    """Each group's EDF as a staircase over the shared grid, its band shaded behind it."""
    if bands.note:
        ax.text(
            0.5,
            0.5,
            bands.note,
            ha="center",
            va="center",
            wrap=True,
            fontsize=8,
            transform=ax.transAxes,
        )
        return
    x = np.concatenate([[bands.grid[0]], bands.grid])
    for k, g in enumerate(bands.groups):
        f = np.concatenate([[0.0], g.f])
        lo = np.nan_to_num(np.concatenate([[0.0], g.lo]), nan=0.0)
        hi = np.nan_to_num(np.concatenate([[0.0], g.hi]), nan=1.0)
        ax.fill_between(x, lo, hi, step="post", color=f"C{k}", alpha=0.18, lw=0)
        n = f"n={g.n}" if bands.weighting == "plain" else f"n_eff={g.n_effective:.1f}"
        ax.step(x, f, where="post", color=f"C{k}", label=f"{g.value} ({n})")


def plot_choice_edf(
    points: DesignPoints,
    param: str,
    path: Path,
    *,
    bins: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> ChoiceFigure:
    """EDF per value of ``param`` (pooling, pos encoding, stem, sr kind, head mix...), with
    bootstrap bands, plain and complexity-normalised by GFLOPs and by params."""
    ch = edf_by_choice(points, param, bins=bins)
    bands = edf_bands_by_choice(points, param, bins=bins, n_boot=n_boot, seed=seed)
    curves: dict[str, dict[str, dict[str, list[float]] | None]] = {}
    for g in ch.groups:
        xs, ys = _steps(g.errors, None)
        entry: dict[str, dict[str, list[float]] | None] = {
            "raw": {"error": xs, "F": ys},
            "normalized": None,
        }
        if g.weights is not None:
            nx, ny = _steps(g.errors, g.weights)
            entry["normalized"] = {"error": nx, "F": ny}
        curves[str(g.value)] = entry
    fig = _figure(4.2 * len(bands) + 0.6, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(bands), sharex=True, sharey=True))
    for ax, b in zip(axes, bands, strict=True):
        draw_bands(ax, b)
        ax.set_xlabel("error (%)")
        ax.set_title(f"{param}: {_WEIGHTING_TITLES[b.weighting]}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.02)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("cumulative share of models")
    source = "sample" if points.is_sample else "optimizer's trials (not a uniform sample)"
    fig.suptitle(
        f"error EDF by {param}, {bands[0].level:.0%} bootstrap bands ({n_boot} resamples of "
        f"the architectures, seed {seed}); {source}",
        fontsize=9,
    )
    note = ""
    if ch.normalization is None:
        note = "no FLOPs bin holds samples of every value: normalised EDFs not drawn"
    else:
        dropped = {k: v for k, v in ch.normalization.dropped.items() if v}
        if dropped:
            note = "outside the common FLOPs support (weight 0): " + ", ".join(
                f"{k}: {v}" for k, v in dropped.items()
            )
    return ChoiceFigure(_save(fig, path), ch, bands, curves, note)


@dataclass
class TrendFigure:
    """Error against numeric choices, one panel each, with bootstrap intervals.

    Attributes:
        path: the PNG.
        trends: per parameter, its `Trend`.
    """

    path: Path
    trends: dict[str, Trend]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path.name, "trends": {k: t.to_dict() for k, t in self.trends.items()}}


def plot_trends(
    points: DesignPoints,
    params: Sequence[str],
    path: Path,
    *,
    statistic: str = "mean",
    seed: int = 0,
    n_boot: int = 1000,
) -> TrendFigure:
    """A grid of small panels: per numeric choice, each sample faint, the mean (or median)
    error per value with its 95 % percentile-bootstrap interval."""
    trends = {
        p: trend_by_value(points, p, statistic=statistic, seed=seed, n_boot=n_boot) for p in params
    }
    if not trends:
        raise AnalysisError("no numeric choice to plot")
    cols = min(4, len(trends))
    rows = math.ceil(len(trends) / cols)
    fig = _figure(3.2 * cols, 2.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
    for ax, (p, tr) in zip(axes, trends.items(), strict=False):
        xs = [v[p] for v in points.values if p in v]
        ys = [float(e) for v, e in zip(points.values, points.errors, strict=True) if p in v]
        ax.scatter(xs, ys, s=8, color="0.6", alpha=0.4)
        yerr = np.vstack([tr.center - tr.lo, tr.hi - tr.center])
        ax.errorbar(tr.values, tr.center, yerr=yerr, fmt="o-", color="C0", ms=4, capsize=3)
        ax.set_title(p, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(trends) :]:
        ax.set_visible(False)
    fig.supylabel("proxy error (%)", fontsize=9)
    fig.suptitle(f"{statistic} error per value, 95 % bootstrap interval (seed {seed})", fontsize=10)
    return TrendFigure(_save(fig, path), trends)


# -- comparing studies ---------------------------------------------------------------------------


@dataclass
class CompareFigure:
    """Two or more studies' error EDFs on one axis: normalised solid, raw dashed."""

    path: Path
    comparison: Comparison
    curves: dict[str, dict[str, dict[str, list[float]] | None]]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path.name, **self.comparison.to_dict(), "curves": self.curves}


def plot_compare(comparison: Comparison, path: Path) -> CompareFigure:
    """The spaces' EDFs with bootstrap bands: plain, normalised by GFLOPs, by params."""
    curves: dict[str, dict[str, dict[str, list[float]] | None]] = {}
    for g in comparison.groups:
        xs, ys = _steps(g.errors, None)
        entry: dict[str, dict[str, list[float]] | None] = {
            "raw": {"error": xs, "F": ys},
            "normalized": None,
        }
        if g.weights is not None:
            nx, ny = _steps(g.errors, g.weights)
            entry["normalized"] = {"error": nx, "F": ny}
        curves[str(g.value)] = entry
    bands = comparison.bands
    fig = _figure(4.2 * max(1, len(bands)) + 0.6, 4.2)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(bands)), sharex=True, sharey=True))
    for ax, b in zip(axes, bands, strict=False):
        draw_bands(ax, b)
        ax.set_title(_WEIGHTING_TITLES[b.weighting], fontsize=10)
    for ax in axes:
        for t in comparison.thresholds:
            ax.axvline(t, color="0.5", ls=":", lw=0.8)
        ax.set_xlabel("error (%)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("cumulative share of models")
    names = " vs ".join(str(g.value) for g in comparison.groups)
    fig.suptitle(f"{names}: error EDFs, 95 % bootstrap bands", fontsize=10)
    return CompareFigure(_save(fig, path), comparison, curves)


def figure_data(figures: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: figure.to_dict()}`` for every figure (lists of figures too)."""
    out: dict[str, Any] = {}
    for name, fig in figures.items():
        if isinstance(fig, list):
            out[name] = [f.to_dict() for f in fig]
        elif fig is not None:
            out[name] = fig.to_dict()
    return out
