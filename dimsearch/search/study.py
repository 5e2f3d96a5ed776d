"""The Optuna study of a space: where it lives, what each trial records, how a rerun resumes.

A study is an ordinary Optuna study (optuna's CLI and optuna-dashboard read it). dimsearch
keeps its own facts in user attributes under the names in `Attr`, so `show`, `export`,
`report` and `dashboard` read the study and nothing else.

Trial states follow one rule: COMPLETE means the architecture ran the full proxy budget and
its values are trustworthy; PRUNED means it was cut short (over budget, or stopped early by the
scheduler) and carries its reason and curve; FAIL means it broke, and carries the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dimsearch._values import is_number
from dimsearch.errors import DimsearchError

__all__ = [
    "Attr",
    "StudyError",
    "curve_attr",
    "number_attr",
    "open_study",
    "pareto_front",
    "recover_orphans",
    "resolve_storage",
    "study_name_of",
]

STUDIES_DIR = Path("studies")
OBJECTIVE_DIRECTIONS = {
    "accuracy": "maximize",
    "gflops": "minimize",
    "params_m": "minimize",
    "latency_ms": "minimize",
}


class StudyError(DimsearchError):
    """The study cannot be used as asked (missing, or mixing incompatible measurements)."""


class Attr:
    """User-attribute names: stable, because they are the study's schema."""

    ARCH = "arch"  # ArchConfig.to_dict()
    SEED = "seed"  # zoo name, for seeded fixed points
    PARAMS = "params"  # parameter count at the target resolution
    GFLOPS = "gflops"  # multiply-adds / 1e9 at the target resolution (analytic = fvcore)
    TARGET_IMG = "target_img_size"
    PROXY_IMG = "proxy_img_size"
    LATENCY_MS = "latency_ms"
    LATENCY = "latency"  # LatencyResult.to_dict(): device, batch, threads, spread
    CURVE = "curve"  # held-out top-1 (%) per epoch
    TRAIN_LOSS = "train_loss"  # per epoch
    EPOCHS = "epochs"  # epochs actually run
    EPOCHS_BUDGET = "epochs_budget"
    REASON = "reason"  # why PRUNED / FAIL
    ERROR = "error"  # traceback tail of a FAIL
    NODE = "node"  # where it ran: hostname / ip / pid
    SECONDS = "seconds"  # wall time of the proxy training
    EPOCH_SECONDS = "epoch_seconds"  # wall time of each epoch (train + eval): replays need it
    EPOCH_CPU_SECONDS = "epoch_cpu_seconds"  # CPU time of each epoch: steady on a busy machine
    RAY_TRIAL = "ray_trial_id"
    WEIGHTS = "weights"  # path of the proxy-trained state dict (COMPLETE trials)
    PROXY_CLASSES = "proxy_num_classes"  # classifier width of those weights
    PROXY_CHANNELS = "proxy_in_chans"
    # study-level
    SPACE = "space"
    LATENCY_KIND = "latency_device_kind"
    OBJECTIVES = "objectives"


def number_attr(user_attrs: dict[str, Any], key: str) -> float | None:
    """The figure stored under ``key``, or ``None`` when it is missing or not a finite number.

    A study is a shared file: people and other tools write into it, and older versions wrote
    what they wrote. The readers (`show`, `report`, the dashboard) show such a value as
    missing rather than stop on it; `export`, which writes code from it, refuses it instead.
    """
    value = user_attrs.get(key)
    return value if is_number(value) else None


def curve_attr(user_attrs: dict[str, Any]) -> list[float]:
    """The stored learning curve, or ``[]`` when it is missing or not a list of numbers."""
    curve = user_attrs.get(Attr.CURVE)
    if isinstance(curve, list) and all(is_number(v) for v in curve):
        return curve
    return []


def storage_url(storage: str | None, name: str) -> str:
    """The storage study ``name`` lives in: as given, else the default sqlite file."""
    return storage or f"sqlite:///{STUDIES_DIR / f'{name}.db'}"


def study_file(storage: str | None, name: str) -> Path | None:
    """The sqlite file of study ``name`` (None for other storages): weights and dashboard
    artifacts are looked for beside it."""
    url = storage_url(storage, name)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def resolve_storage(storage: str | None, name: str) -> str | optuna.storages.BaseStorage:
    """Storage for study ``name``: default ``sqlite:///studies/<name>.db``; any SQLAlchemy URL;
    or a path ending in ``.log``/``.jsonl`` for Optuna's journal file storage (NFS-friendly)."""
    if storage is None:
        STUDIES_DIR.mkdir(exist_ok=True)
        storage = storage_url(None, name)
    if "://" not in storage and storage.endswith((".log", ".jsonl", ".journal")):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    if storage.startswith("sqlite:///"):
        # a generous lock timeout: the dashboard and `show` may read while a search writes
        return optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}})
    return storage


def study_name_of(target: str) -> tuple[str, str | None]:
    """Interpret a STUDY argument: a space name, a ``.db`` file, or a space YAML path.

    Returns (study name, storage URL or None for the default)."""
    path = Path(target)
    if path.suffix == ".db":
        if not path.is_file():
            raise StudyError(f"{path}: no such study file")
        return path.stem, f"sqlite:///{path}"
    if path.suffix in (".yaml", ".yml"):
        return path.stem, None
    return target, None


def open_study(
    name: str,
    storage: str | optuna.storages.BaseStorage | None = None,
    *,
    directions: list[str] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Load study ``name``; with ``directions`` create it if missing (and check them if not).

    Loading never creates anything: a missing default ``studies/<name>.db`` is a StudyError.
    """
    default = STUDIES_DIR / f"{name}.db"
    if directions is None and storage is None and not default.is_file():
        raise StudyError(f"no study {name!r}: {default} does not exist (run the space first)")
    st = resolve_storage(storage, name) if storage is None or isinstance(storage, str) else storage
    if directions is None:
        try:
            return optuna.load_study(study_name=name, storage=st, sampler=sampler)
        except KeyError:
            where = storage or f"studies/{name}.db"
            raise StudyError(f"no study named {name!r} in {where}") from None
    study = optuna.create_study(
        study_name=name, storage=st, directions=directions, sampler=sampler, load_if_exists=True
    )
    have = [d.name.lower() for d in study.directions]
    if have != list(directions):
        raise StudyError(
            f"study {name!r} exists with directions {have}, but the space asks {directions}; "
            f"use another --storage or rename the space"
        )
    return study


def set_trial_attrs(study: optuna.Study, trial_id: int, attrs: dict[str, Any]) -> None:
    """Write user attrs to a RUNNING trial, including one this process did not start
    (storage rejects updates to finished trials, so call this before ``study.tell``)."""
    trial = optuna.trial.Trial(study, trial_id)
    for key, value in attrs.items():
        trial.set_user_attr(key, _jsonable(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; storage backends reject or mangle it
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def recover_orphans(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a driver that died as FAIL, with the reason.

    Only one driver runs a study at a time (dimsearch's rule), so at start-up any RUNNING trial
    is an orphan: its driver was killed before it could record the outcome.
    """
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        set_trial_attrs(
            study,
            t._trial_id,
            {
                Attr.REASON: "left RUNNING by a driver that stopped (killed or crashed); "
                "marked failed when the study was resumed"
            },
        )
        study.tell(t.number, state=TrialState.FAIL)
        numbers.append(t.number)
    return numbers


def seeds_present(study: optuna.Study) -> set[str]:
    """Seed names already in the study, in any state (so reruns never enqueue them twice)."""
    return {
        t.user_attrs[Attr.SEED]
        for t in study.get_trials(deepcopy=False)
        if Attr.SEED in t.user_attrs
    }


def pareto_front(trials: Iterable[FrozenTrial], directions: list[str]) -> list[FrozenTrial]:
    """Non-dominated COMPLETE trials (ties kept), sorted by the first objective, best first."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    sign = [1.0 if d == "minimize" else -1.0 for d in directions]

    def key(t: FrozenTrial) -> list[float]:
        return [s * v for s, v in zip(sign, t.values, strict=True)]

    keyed = [(t, key(t)) for t in done]
    front = [
        t
        for t, k in keyed
        if not any(all(a <= b for a, b in zip(o, k, strict=True)) and o != k for _, o in keyed)
    ]
    return sorted(front, key=lambda t: key(t)[0])
