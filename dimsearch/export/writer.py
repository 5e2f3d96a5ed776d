"""Write the chosen trials out: one standalone ``.py`` per architecture, optionally its weights.

Every record is read and validated before the first file is written, so a study with one bad
trial exports nothing rather than half a front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from dimsearch.export._record import (
    ExportError,
    ProxyWeights,
    TrialRecord,
    proxy_weights,
    trial_record,
)
from dimsearch.export.codegen import generate_source, module_name, study_stem
from dimsearch.outputs import check_out_dir
from dimsearch.search.study import repeat_stats

__all__ = ["ExportedFile", "default_out_dir", "export_trials"]


@dataclass(frozen=True)
class ExportedFile:
    """One written architecture.

    Attributes:
        path: the ``.py`` file.
        record: the trial it came from (validated).
        weights: the ``.pt`` written next to it, if weights were asked for.
    """

    path: Path
    record: TrialRecord
    weights: Path | None = None


def default_out_dir(study: str) -> Path:
    """``exports/<study>/``, the study name reduced to a safe folder name."""
    return Path("exports") / study_stem(study)


def _checked_state_dict(record: TrialRecord, proxy: ProxyWeights) -> dict:
    """The weights, loaded safely and proven to fit the proxy-sized library model."""
    import torch

    from dimsearch.models import build_model

    try:
        state = torch.load(proxy.path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or one holding more than tensors
        raise ExportError(f"{proxy.path}: cannot load as a state dict ({err})") from None
    if not isinstance(state, dict):
        raise ExportError(f"{proxy.path}: holds a {type(state).__name__}, not a state dict")
    cfg = record.arch.replace(in_chans=proxy.in_chans)
    model = build_model(cfg, num_classes=proxy.num_classes, img_size=proxy.img_size)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ExportError(
            f"{proxy.path} does not fit trial {record.number}'s architecture at "
            f"{proxy.num_classes} classes, {proxy.in_chans} channels, {proxy.img_size} px: {err}"
        ) from None
    return model.state_dict()


def export_trials(
    study: optuna.Study,
    trials: list[FrozenTrial],
    out_dir: Path,
    *,
    weights: bool = False,
    weights_dirs: Sequence[Path] = (),
) -> list[ExportedFile]:
    """Write one standalone PyTorch file per trial into ``out_dir`` (created if needed).

    Files are named ``<study>_trial<N>.py``; an existing file of that name is replaced.

    Args:
        study: the study the trials belong to.
        trials: the trials to write (see `dimsearch.export.select_trials`).
        out_dir: destination folder.
        weights: also write each trial's proxy-trained state dict as ``<name>.pt``, loaded by
            the file's self-check; a trial without recorded weights is an error.
        weights_dirs: where a relative `Attr.WEIGHTS` path may be, after the working
            directory (the CLI passes the study file's folder).

    Raises:
        ExportError: a trial has no or an invalid architecture, or no usable weights.
    """
    out_dir = check_out_dir(out_dir)  # refused before anything is written
    runs = repeat_stats(study)  # once for all the trials, not once per trial
    records = [(t, trial_record(study, t, runs)) for t in trials]
    search = [Path.cwd(), *weights_dirs]
    plans = []
    for trial, record in records:
        proxy = proxy_weights(study, trial, record, search) if weights else None
        state = _checked_state_dict(record, proxy) if proxy else None
        plans.append((record, proxy, state, generate_source(record, proxy)))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for record, proxy, state, source in plans:
        path = out_dir / f"{module_name(study.study_name, record.number)}.py"
        path.write_text(source)
        pt = None
        if proxy is not None:
            import torch

            pt = path.with_suffix(".pt")
            torch.save(state, pt)
        written.append(ExportedFile(path, record, pt))
    return written
