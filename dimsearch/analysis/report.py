"""The static report of a study: one ``index.html`` with PNGs and ``data.json`` beside it.

What a reader takes away from a search, offline: the summary (trials by state, best accuracy,
front size), the Pareto table with the seeds named, the fronts, how the hypervolume grew, which
parameters mattered for which objective, and the design-space statistics (error EDFs overall
and per choice, raw and complexity-normalised; error trends of the numeric choices).

The page has no scripts and loads nothing from the network: images by relative path and a
few lines of inline CSS, so the directory can be zipped, mailed or served from anywhere.
``data.json`` holds the numbers behind every figure, for anyone who wants to replot them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import optuna

from dimsearch._values import json_text
from dimsearch.analysis import figures as F
from dimsearch.analysis._describe import arch_line, arch_of
from dimsearch.analysis.edf import BandedEDFs, EDFSummary
from dimsearch.analysis.points import (
    TRIALS_NOTE,
    AnalysisError,
    choice_kinds,
    points_of,
    source_note,
)
from dimsearch.search.gate import latency_drift
from dimsearch.search.sample import SampleTable
from dimsearch.search.show import accuracy_text
from dimsearch.search.study import (
    Attr,
    latency_pairs,
    objectives_of,
    state_counts,
    study_rows,
)

__all__ = ["Report", "write_report"]


@dataclass
class Report:
    """What `write_report` wrote.

    Attributes:
        out_dir: the report directory.
        index: ``out_dir/index.html``.
        data: ``out_dir/data.json``.
        images: the PNGs, in page order.
        summary: the summary section's numbers (also in ``data.json``).
        notes: what was skipped and why (too few trials, no overlap in FLOPs...).
    """

    out_dir: Path
    index: Path
    data: Path
    images: list[Path]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _fmt(value: Any, spec: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return spec.format(value)


def _summary(study: optuna.Study, rows: list[dict[str, Any]]) -> dict[str, Any]:
    objectives = objectives_of(study)
    every = study_rows(study, all_trials=True)
    done = [r for r in every if r["state"] == "COMPLETE" and r["accuracy"] is not None]
    best = None
    if done:
        r = max(done, key=lambda r: r["accuracy"])
        best = {"number": r["number"], "accuracy": r["accuracy"], "label": r["label"]}
    space = study.user_attrs.get(Attr.SPACE) or {}
    seeds = [
        {"label": r["label"], "number": r["number"], "accuracy": r["accuracy"], "state": r["state"]}
        for r in every
        if r["label"]
    ]
    return {
        "study": study.study_name,
        "space": space.get("name"),
        "description": space.get("description"),
        "objectives": [
            {"name": n, "direction": d}
            for n, d in zip(objectives.names, objectives.directions, strict=True)
        ],
        "trials": len(every),
        "states": state_counts(study),
        "best": best,
        "front_size": sum(1 for r in rows if not r.get("reference")),
        "seeds": seeds,
    }


def _pareto_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = study_rows(study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for r in rows:
        cfg = arch_of(by_number[r["number"]].user_attrs)
        r["arch"] = arch_line(cfg) if cfg else ""
    return rows


def write_report(
    study: optuna.Study,
    out_dir: Path | str,
    *,
    reference: Sequence[float] | None = None,
    bins: int | None = None,
    seed: int = 0,
    sample: SampleTable | None = None,
    n_boot: int = 1000,
) -> Report:
    """Write the report of ``study`` into ``out_dir`` (created; files there are replaced).

    Args:
        study: the study (any storage).
        out_dir: where ``index.html``, the PNGs and ``data.json`` go.
        reference: hypervolume reference point in the objectives' units (default: the worst
            completed values padded by 10 % of their range; see `hypervolume_history`).
        bins: FLOPs bins of the complexity normalisation (default: `default_bins`).
        seed: seed of the bootstrap intervals and bands, so two reports of one study agree.
        sample: a design-space sample of the same space to draw the design-space statistics
            from. ``None``: the study's own sample if it is one (tagged by `dimsearch sample`),
            else its COMPLETE trials, and the page says those are not a uniform sample.
        n_boot: bootstrap resamples of the EDF bands.

    Each figure that cannot be drawn (no completed trial, a single value) is left out with a
    note on the page and in `Report.notes`; the report itself is always written.
    """
    from dimsearch.analysis.hypervolume import check_reference
    from dimsearch.outputs import check_out_dir

    out = check_out_dir(out_dir)
    if reference is not None:  # refused before anything is written
        check_reference(reference, len(study.directions))
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    rows = _pareto_rows(study)
    summary = _summary(study, rows)
    figs: dict[str, Any] = {}
    figs["fronts"] = F.plot_fronts(study, out)
    if not figs["fronts"]:
        notes.append("fronts: no completed trial to plot")
    figs["hypervolume"] = F.plot_hypervolume(study, out / "hypervolume.png", reference=reference)
    summary["hypervolume"] = figs["hypervolume"].history.final
    summary["compute_hours"] = (figs["hypervolume"].history.seconds or [0.0])[-1] / 3600.0
    figs["importances"] = F.plot_importances(study, out / "importances.png")
    notes += [f"importances: {n}" for n in figs["importances"].notes]
    drift = latency_drift(latency_pairs(study), study.study_name)
    if drift:
        notes.append(f"latency: {drift}")
    points = points_of(sample if sample is not None else study)
    summary["edf_source"] = {"kind": points.source, "note": source_note(points)}
    if not points.is_sample:
        notes.append(f"design-space statistics: {TRIALS_NOTE}")
    categorical, numeric = choice_kinds(points)
    figs["edf"] = None
    figs["choices"] = []
    figs["trends"] = None
    if len(points):
        figs["edf"] = F.plot_edf(points, out / "edf.png", title=f"{study.study_name}: error EDF")
        for param in categorical:
            name = "edf_" + param.replace(".", "_") + ".png"
            try:
                figs["choices"].append(
                    F.plot_choice_edf(
                        points, param, out / name, bins=bins, n_boot=n_boot, seed=seed
                    )
                )
            except AnalysisError as err:
                notes.append(f"EDF by {param}: {err}")
        if numeric:
            figs["trends"] = F.plot_trends(points, numeric, out / "trends.png", seed=seed)
    else:
        notes.append("design-space statistics: no completed trial with accuracy and GFLOPs")
    data = {
        "summary": summary,
        "pareto": rows,
        "figures": F.figure_data(figs),
        "notes": notes,
    }
    data_path = out / "data.json"
    data_path.write_text(json_text(data, indent=1))
    index = out / "index.html"
    index.write_text(_html(study, summary, rows, figs, points.excluded, notes))
    images = [f.path for f in figs["fronts"]]
    images += [
        f.path
        for f in (
            figs["hypervolume"],
            figs["importances"],
            figs["edf"],
            *figs["choices"],
            figs["trends"],
        )
        if f is not None and f.path is not None
    ]
    return Report(out, index, data_path, images, summary, notes)


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;
  margin:0;background:#fafbfc}
main{max-width:1180px;margin:0 auto;padding:1.5rem 2rem 3rem}
h1{margin:.2rem 0 0;font-size:1.7rem}h1 small{color:#6a737d;font-weight:400;font-size:1rem}
h2{margin-top:2.4rem;border-bottom:1px solid #e1e4e8;padding-bottom:.3rem}
h3{margin-top:1.6rem}
nav a{margin-right:1rem;color:#0366d6;text-decoration:none}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.86rem;background:#fff}
th,td{border:1px solid #e1e4e8;padding:.28rem .55rem;text-align:right;vertical-align:top}
th{background:#f3f5f7}td.l,th.l{text-align:left}
table.kv td:first-child{text-align:left;color:#586069;background:#f6f8fa}
tr.seed td{background:#fff5f3}
figure{margin:1rem 0;display:inline-block;vertical-align:top}
figure.half{width:48%;margin-right:1.5%}
figure img{max-width:100%;border:1px solid #e1e4e8;background:#fff}
figcaption{font-size:.83rem;color:#586069;max-width:900px}
p.note{color:#8a6d3b;background:#fcf8e3;padding:.4rem .7rem;border-radius:4px;font-size:.86rem}
code{font-size:.85em;background:#f3f5f7;padding:0 .25em;border-radius:3px}
"""


def _table(
    header: list[str],
    rows: list[list[Any]],
    *,
    left: tuple[int, ...] = (),
    classes: list[str] | None = None,
) -> str:
    """An HTML table; cells are escaped here; columns in ``left`` align left (text), the
    others right (numbers)."""

    def cell(tag: str, i: int, text: Any) -> str:
        cls = ' class="l"' if i in left else ""
        return f"<{tag}{cls}>{escape(str(text))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        body.append(f"<tr{cls}>{''.join(cell('td', i, c) for i, c in enumerate(row))}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path | None, alt: str, caption: str, *, half: bool = False) -> str:
    if path is None:
        return ""
    cls = ' class="half"' if half else ""
    return (
        f'<figure{cls}><img src="{escape(path.name)}" alt="{escape(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _summary_html(s: dict[str, Any]) -> str:
    best = s["best"]
    best_text = "–"
    if best:
        best_text = f"{best['accuracy']:.2f} % (trial {best['number']}" + (
            f", {best['label']})" if best["label"] else ")"
        )
    rows = [
        ["study", s["study"]],
        ["space", (s["space"] or "–") + (f" — {s['description']}" if s["description"] else "")],
        ["objectives", ", ".join(f"{o['name']} ({o['direction']})" for o in s["objectives"])],
        ["trials", f"{s['trials']}: " + ", ".join(f"{v} {k}" for k, v in s["states"].items())],
        ["best accuracy", best_text],
        ["Pareto front", f"{s['front_size']} trials"],
        ["hypervolume", _fmt(s.get("hypervolume"), "{:.4g}")],
        ["proxy-training compute", _fmt(s.get("compute_hours"), "{:.2f} h")],
        [
            "seeds",
            ", ".join(
                f"{d['label']} ({_fmt(d['accuracy'])} %)"
                if d["state"] == "COMPLETE"
                else f"{d['label']} ({d['state'].lower()})"
                for d in s["seeds"]
            )
            or "–",
        ],
    ]
    body = "".join(f"<tr><td>{escape(k)}</td><td class='l'>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _pareto_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No completed trial yet, so no front.</p>'
    header = ["#", "model", "top-1 %", "GFLOPs", "latency ms", "params M", "epochs", "architecture"]
    body = [
        [
            r["number"],
            (r["label"] or "") + (" (reference, off the front)" if r.get("reference") else ""),
            accuracy_text(r),
            _fmt(r["gflops"], "{:.3f}"),
            _fmt(r["latency_ms"]),
            _fmt(r["params"] and r["params"] / 1e6),
            _fmt(r["epochs"], "{}"),
            r["arch"],
        ]
        for r in rows
    ]
    classes = ["seed" if r["label"] else "" for r in rows]
    return _table(header, body, left=(1, 7), classes=classes)


def _edf_table(fig: F.ChoiceFigure) -> str:
    header = [
        "value",
        "n",
        "mean",
        "min",
        "q10",
        "q25",
        "median",
        "area",
        "norm. n_eff",
        "norm. mean",
        "norm. q25",
        "norm. median",
        "norm. area",
    ]

    def cells(s: EDFSummary | None) -> list[str]:
        if s is None:
            return ["–"] * 5
        return [
            _fmt(s.n_effective, "{:.1f}"),
            _fmt(s.mean),
            _fmt(s.quantiles[0.25]),
            _fmt(s.quantiles[0.5]),
            _fmt(s.area, "{:.3f}"),
        ]

    rows = []
    for g in [fig.choice.overall, *fig.choice.groups]:
        r = g.raw
        value = "all" if g is fig.choice.overall else str(g.value)
        rows.append(
            [
                value,
                r.n,
                _fmt(r.mean),
                _fmt(r.min),
                _fmt(r.quantiles[0.1]),
                _fmt(r.quantiles[0.25]),
                _fmt(r.quantiles[0.5]),
                _fmt(r.area, "{:.3f}"),
                *(cells(g.normalized) if g is not fig.choice.overall else ["–"] * 5),
            ]
        )
    return _table(header, rows, left=(0,))


def band_rows(bands: BandedEDFs) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a banded-EDF table: per group n (or n_eff), the median error and the
    share of models under each threshold, each with its bootstrap interval. The CLI prints the
    same rows."""
    header = [
        "value",
        "n" if bands.weighting == "plain" else "n_eff",
        "median error %",
        *(f"% ≤ {t:g}" for t in bands.thresholds),
    ]
    rows = []
    for g in bands.groups:
        m, lo, hi = g.median
        rows.append(
            [
                str(g.value),
                str(g.n) if bands.weighting == "plain" else f"{g.n_effective:.1f}/{g.n}",
                f"{m:.2f} [{lo:.2f},{hi:.2f}]",
                *(
                    f"{100 * f:.0f} [{100 * flo:.0f},{100 * fhi:.0f}]"
                    for f, flo, fhi in (g.shares[t] for t in bands.thresholds)
                ),
            ]
        )
    return header, rows


def _bands_html(bands: list[BandedEDFs]) -> str:
    parts = []
    for b in bands:
        title = {
            "plain": "plain",
            "gflops": "normalised by GFLOPs",
            "params": "normalised by params",
        }
        parts.append(f"<p><b>{escape(title[b.weighting])}</b>: {escape(b.verdict())}</p>")
        if b.groups:
            header, rows = band_rows(b)
            parts.append(_table(header, rows, left=(0,)))
        if b.dropped:
            parts.append(
                '<p class="note">outside the common complexity support (weight 0): '
                + escape(", ".join(f"{k}: {v}" for k, v in b.dropped.items()))
                + "</p>"
            )
    return "".join(parts)


def _html(
    study: optuna.Study,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    figs: dict[str, Any],
    excluded: dict[str, int],
    notes: list[str],
) -> str:
    name = escape(study.study_name)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{name}: dimsearch report</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{name} <small>dimsearch report</small></h1>",
        '<nav><a href="#summary">Summary</a><a href="#pareto">Pareto front</a>'
        '<a href="#fronts">Fronts</a><a href="#hypervolume">Hypervolume</a>'
        '<a href="#importances">Importances</a><a href="#design-space">Design space</a>'
        '<a href="data.json">data.json</a></nav>',
        '<section id="summary"><h2>Summary</h2>',
        _summary_html(summary),
        "</section>",
        '<section id="pareto"><h2>Pareto front</h2>',
        "<p>Non-dominated COMPLETE trials over all objectives, best accuracy first; seeds "
        "(published models the search started from) are named and shaded. Costs are at the "
        "target resolution; accuracy is the proxy's.</p>",
        _pareto_html(rows),
        "</section>",
        '<section id="fronts"><h2>Fronts</h2>',
    ]
    for f in figs["fronts"]:
        axis = F.FRONT_AXES[f.x][0]
        cap = (
            f"Accuracy vs {escape(axis)}: every completed trial (grey), the study's Pareto "
            f"trials (blue), the front of this pair (staircase), seeds as red stars "
            f"({escape(', '.join(f.labels)) or 'none'})."
        )
        parts.append(_img(f.path, f"accuracy vs {axis}", cap, half=True))
    if not figs["fronts"]:
        parts.append('<p class="note">No completed trial to plot.</p>')
    hv = figs["hypervolume"]
    ref = ", ".join(
        f"{escape(n)} = {v:.4g}"
        for n, v in zip(hv.history.objectives, hv.history.reference, strict=True)
    )
    parts += [
        "</section>",
        '<section id="hypervolume"><h2>Hypervolume</h2>',
        _img(
            hv.path,
            "hypervolume",
            f"Volume dominated by the front, by trial number and by cumulative proxy-training "
            f"time (pruned and failed trials count: they were paid for). Reference point: {ref} "
            f"({escape(hv.history.reference_source)}).",
        ),
        "</section>",
        '<section id="importances"><h2>Parameter importances</h2>',
    ]
    imp = figs["importances"]
    parts.append(
        _img(
            imp.path,
            "parameter importances",
            "PED-ANOVA (Optuna's default evaluator): how strongly the best 10 % of completed "
            "trials concentrate on particular values of each parameter, per objective "
            "(normalised to sum to 1). With few trials this is a hint, not a ranking.",
        )
    )
    parts += [f'<p class="note">{escape(n)}</p>' for n in imp.notes]
    parts += [
        "</section>",
        '<section id="design-space"><h2>Design-space statistics</h2>',
        "<p>After Radosavovic et al. (pycls, 2019/2020): a design space is judged by the "
        "distribution of its models' errors, not by its best model. The error EDF "
        "<code>F(e)</code> is the share of completed models with proxy error ≤ e (error = 100 − "
        "accuracy); a curve further left and higher is a better space. Because a choice that "
        "makes models bigger also makes them better, per-choice EDFs are also shown "
        "<em>complexity-normalised</em> (pycls's rule): log-complexity (GFLOPs, or params) is "
        "binned, each model weighs 1 / (its value's count in its bin), normalised within the "
        "value, over the bins all values share, so every value has the same (uniform) "
        "complexity histogram. Bands are pointwise 95 % percentile-bootstrap bands over the "
        "error grid, resampling architectures within each value (weights recomputed in every "
        "resample; fixed seed); the median and the shares under a few errors carry intervals "
        "from the same resamples. <em>area</em> is the area under F over the pooled error "
        "range (1 = all at the lowest error); <em>n_eff</em> the effective sample size after "
        "reweighting. From a study's trials only COMPLETE ones count: pruned ones were "
        "trained for fewer epochs (or not at all).</p>",
    ]
    src = summary.get("edf_source") or {}
    if src.get("kind") == "sample":
        parts.append(f"<p><b>Source:</b> {escape(src['note'])}.</p>")
    elif src:
        parts.append(f'<p class="note"><b>Source:</b> {escape(src["note"])}.</p>')
    if excluded:
        parts.append(
            '<p class="note">Not in the statistics: '
            + escape(", ".join(f"{v} {k}" for k, v in excluded.items()))
            + " trials.</p>"
        )
    if figs["edf"] is not None:
        e = figs["edf"]
        parts.append(
            _img(
                e.path,
                "error EDF",
                f"Error EDF of all {e.summary['n']} completed models; seeds marked "
                f"({escape(', '.join(e.labels)) or 'none'}). Mean error {e.summary['mean']:.2f} %, "
                f"best {e.summary['min']:.2f} %.",
            )
        )
    for ch in figs["choices"]:
        p = escape(ch.choice.param)
        parts.append(f"<h3>By <code>{p}</code></h3>")
        parts.append(
            _img(
                ch.path,
                f"error EDF by {p}",
                f"Error EDFs per value of <code>{p}</code>: raw "
                "(left) and complexity-normalised (right).",
            )
        )
        if ch.choice.n_missing:
            parts.append(
                f'<p class="note">{ch.choice.n_missing} completed trials have no '
                f"<code>{p}</code> (it does not apply to them).</p>"
            )
        if ch.note:
            parts.append(f'<p class="note">{escape(ch.note)}</p>')
        parts.append(_bands_html(ch.bands))
        parts.append("<p>Summaries (raw and normalised by GFLOPs):</p>")
        parts.append(_edf_table(ch))
    if figs["trends"] is not None:
        parts.append("<h3>Numeric choices</h3>")
        parts.append(
            _img(
                figs["trends"].path,
                "error trends",
                "Mean error per value of each numeric choice (per-stage depth, heads, head "
                "dim, widths = heads × head dim, total depth), with 95 % percentile-bootstrap "
                "intervals (1000 resamples, fixed seed); grey dots are the models.",
            )
        )
    other = [n for n in notes if not n.startswith("importances:")]
    if other:
        parts.append("<h3>Notes</h3>" + "".join(f'<p class="note">{escape(n)}</p>' for n in other))
    parts += [
        "</section>",
        '<footer><p><small>Numbers behind every figure: <a href="data.json">data.json</a>. '
        "Written by <code>dimsearch report</code> from the study alone.</small></p></footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)
