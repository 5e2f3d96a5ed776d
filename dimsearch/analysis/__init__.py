"""Inspect a study and take it away: design-space statistics, figures, a static report, and
optuna-dashboard with notes and model code attached.

Everything here reads the study and nothing else (no space file, no Ray, no torch)::

    from dimsearch.analysis import study_points, edf_by_choice, write_report
    points = study_points(study)                  # COMPLETE trials as errors, GFLOPs, params
    edf_by_choice(points, "pool").groups          # error EDF per pooling kind, raw + normalised
    write_report(study, "reports/pit")            # index.html, PNGs, data.json
    prepare_dashboard(study, "studies/pit.artifacts"); serve(storage)

Modules: `points` (trials to arrays), `edf` (statistics, pure numpy), `hypervolume`, `figures`
(matplotlib), `report` (static HTML), `dashboard` (optuna-dashboard).
"""

from __future__ import annotations

from dimsearch._lazy import lazy_exports

# public name -> module; imported on first use, so `dimsearch dashboard` (which never plots)
# does not pay for matplotlib, which `report` and `figures` load
_HOMES = {
    "AnalysisError": "points",
    "compare_points": "edf",
    "complexity_weights": "edf",
    "edf_by_choice": "edf",
    "error_edf": "edf",
    "hypervolume": "hypervolume",
    "prepare_dashboard": "dashboard",
    "serve": "dashboard",
    "study_points": "points",
    "trend_by_value": "edf",
    "write_report": "report",
}

__all__ = [
    "AnalysisError",
    "compare_points",
    "complexity_weights",
    "edf_by_choice",
    "error_edf",
    "hypervolume",
    "prepare_dashboard",
    "serve",
    "study_points",
    "trend_by_value",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__, globals())
