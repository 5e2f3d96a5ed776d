"""Take an architecture away: a trial of a study as a standalone, editable PyTorch file.

Public API::

    trials = select_trials(study, pick="knee")          # or trial=N, pick="accuracy", pareto=True
    files = export_trials(study, trials, Path("exports/pit"), weights=False)
    source = generate_source(trial_record(study, trial))  # the text of one file

The written file imports only torch, spells the architecture out with literal numbers, and
names its parameters as `dimsearch.build_model` does, so library state dicts load strictly.
"""

from __future__ import annotations

from dimsearch.export._record import ExportError, TrialRecord, trial_record
from dimsearch.export.codegen import generate_source
from dimsearch.export.pick import PICK_RULES, Constraints, knee_index, select_trials
from dimsearch.export.writer import ExportedFile, default_out_dir, export_trials

__all__ = [
    "PICK_RULES",
    "Constraints",
    "ExportError",
    "ExportedFile",
    "TrialRecord",
    "default_out_dir",
    "export_trials",
    "generate_source",
    "knee_index",
    "select_trials",
    "trial_record",
]
