"""The Optuna study of a space: its schema, where it lives, and how it is read and written.

A study is an ordinary Optuna study (optuna's CLI and optuna-dashboard read it). This module is
the one place that knows what dimsearch keeps in it; `run` writes it and `show`, `export`,
`report` and `dashboard` read it through this module and nothing else.

The contract:

* **Objectives.** `OBJECTIVES` maps every objective a space may name to its Optuna direction,
  fixed by name (a space cannot ask to maximise FLOPs). A study records the names it uses, in
  order, as the study attr `Attr.OBJECTIVES`; `objectives_of` reads them back with the
  directions, and `Objectives.accuracy` says which one is the proxy accuracy.
* **User attributes.** dimsearch's facts about a trial (architecture, costs, curve, reason)
  and about the study (space, objectives) live in user attrs under the names in `Attr`; those
  names are the schema and stay stable. `number_attr` and `curve_attr` read figures back and
  treat a value of the wrong type as missing, because a study is a shared file.
* **Trial states.** COMPLETE means the architecture ran the full proxy budget and its values
  are trustworthy; PRUNED means it was cut short (over budget, or stopped early by the
  scheduler) and carries its reason and curve; FAIL means it broke, and carries the reason
  and its cause (`FailCause`: the trial's own error, or the run stopping under it). No trial
  stays RUNNING once its driver is gone (`recover_orphans`).
* **Seeds.** A reference architecture is trained once: a rerun enqueues a seed again only
  when it is missing or every run of it was stopped from outside (`seeds_to_train`).
* **Storage faults.** A write that fails is retried while a database *server* may come back
  (`STORAGE_RETRY_S`); what still fails, or fails on a local file (full disk, read-only), is
  a `StorageError` naming the storage, never a bare traceback (`storage_call`).
* **The front.** `front_trials` is the study's Pareto front: the non-dominated COMPLETE trials
  (Optuna's `Study.best_trials`); `nondominated` applies the same rule to bare points (a 2-D
  plane of the front, the slices of a hypervolume). Ties are kept in both.
* **Reading.** `study_rows` and `trial_row` give flat, JSON-ready records (what `show` prints
  and `report` tabulates); `state_counts` counts trials by state; `study_provenance` says
  what the study was recorded with (versions, source commit, data cache).
* **Optuna's private parts.** Ids and the storage object that Optuna keeps private
  (``Study._storage``, ``Study._study_id``, ``Trial._trial_id``) are reached here and nowhere
  else (`trial_id`, `study_id`, `trial_handle`, `study_system_attrs`,
  `set_study_system_attr`), so an Optuna release that renames them breaks one module, and
  tests/test_study.py says so.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from dimsearch import zoo
from dimsearch._values import is_number, json_safe
from dimsearch.errors import DimsearchError
from dimsearch.search.settings import OBJECTIVES

__all__ = [
    "ACCURACY",
    "OBJECTIVES",
    "SAMPLE_REPEAT_EVERY",
    "SAMPLE_TAG",
    "STORAGE_RETRY_S",
    "STUDIES_DIR",
    "Attr",
    "FailCause",
    "Objectives",
    "RepeatStats",
    "StorageError",
    "StudyError",
    "curve_attr",
    "directions_of",
    "front_trials",
    "latency_pairs",
    "missing_repeats",
    "nondominated",
    "number_attr",
    "objectives_of",
    "open_storage",
    "open_study",
    "recover_orphans",
    "repeat_stats",
    "resolve_storage",
    "seeds_to_train",
    "set_study_system_attr",
    "set_trial_attrs",
    "state_counts",
    "storage_call",
    "storage_url",
    "storage_where",
    "study_file",
    "study_id",
    "study_name_of",
    "study_provenance",
    "study_rows",
    "study_system_attrs",
    "trial_accuracy",
    "trial_handle",
    "trial_id",
    "trial_row",
]

STUDIES_DIR = Path("studies")

# Objective name -> Optuna direction. Fixed by name, so a space cannot ask to maximise FLOPs.
# Accuracy is the only objective maximised, which `Objectives.accuracy` relies on.
# The objective table is the space format's vocabulary (search/settings.py, torch- and
# Optuna-free); the study re-exports it as part of its schema.
ACCURACY = "accuracy"
SAMPLE_TAG = "sample"  # study user attr of a design-space sample: {"n": N, "repeats": K}
SAMPLE_REPEAT_EVERY = 10  # a sample's repeats go to every 10th architecture (and the seeds)


class StudyError(DimsearchError):
    """The study cannot be used as asked (missing, or mixing incompatible measurements)."""


class StorageError(StudyError):
    """The study's storage stopped taking writes (full disk, read-only file, server gone)."""


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
    PREDICTED_LATENCY_MS = "predicted_latency_ms"  # from the part table, before building
    CURVE = "curve"  # held-out top-1 (%) per epoch
    TRAIN_LOSS = "train_loss"  # per epoch
    EPOCHS = "epochs"  # epochs actually run
    EPOCHS_BUDGET = "epochs_budget"
    REASON = "reason"  # why PRUNED / FAIL
    ERROR = "error"  # traceback tail of a FAIL
    FAIL_CAUSE = "fail_cause"  # a FailCause: whose fault a FAIL was (decides seed retraining)
    NODE = "node"  # where it ran: hostname / ip / pid
    SECONDS = "seconds"  # wall time of the proxy training
    TRAIN_SEED = "train_seed"  # the proxy training's seed (repeats differ only in it)
    REPEAT_OF = "repeat_of"  # number of the trial this one re-trains with another seed
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
    # the latest session's dimsearch, torch, timm, optuna, ray versions, git_commit, git_dirty
    VERSIONS = "versions"
    # the proxy data the trials trained on: {"key": cache folder name, "checksum": ...}
    DATA_CACHE = "data_cache"


class FailCause:
    """Why a trial FAILed: its own doing, or the run stopping under it (`Attr.FAIL_CAUSE`).

    Only `ERROR` is the trial's own; the others say nothing about the architecture, so a
    seed that failed through them is trained again (`seeds_to_train`)."""

    ERROR = "error"  # exception, non-finite accuracy, dead worker, unrecordable values
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM stopped the run
    ENDED = "ended"  # the session ended first (time budget, or its trials ran out)
    KILLED = "killed"  # the driver died; found RUNNING by the next run (`recover_orphans`)
    STORAGE = "storage"  # the study's storage stopped taking writes

    EXTERNAL = frozenset({INTERRUPTED, ENDED, KILLED, STORAGE})


# -- objectives ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objectives:
    """A study's objectives, in study order.

    Attributes:
        names: as recorded in `Attr.OBJECTIVES`; ``objective0``, ``objective1``, ... for a
            study that did not record them (or recorded the wrong number of them).
        directions: ``maximize`` / ``minimize`` per objective.
    """

    names: list[str]
    directions: list[str]

    @property
    def accuracy(self) -> int | None:
        """Where accuracy sits: by name, else the first maximised objective (accuracy is the
        only one `OBJECTIVES` maximises); ``None`` when there is neither."""
        if ACCURACY in self.names:
            return self.names.index(ACCURACY)
        return next((i for i, d in enumerate(self.directions) if d == "maximize"), None)


def directions_of(study: optuna.Study) -> list[str]:
    """The study's directions as ``maximize`` / ``minimize``."""
    return [d.name.lower() for d in study.directions]


def objectives_of(study: optuna.Study) -> Objectives:
    """The study's objectives (one read of its user attrs)."""
    directions = directions_of(study)
    names = study.user_attrs.get(Attr.OBJECTIVES)
    if not names or len(names) != len(directions):
        names = [f"objective{i}" for i in range(len(directions))]
    return Objectives(list(names), directions)


# -- figures -------------------------------------------------------------------------------------


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


def trial_accuracy(trial: FrozenTrial, accuracy: int | None) -> float | None:
    """The trial's accuracy: its objective value at index ``accuracy`` (`Objectives.accuracy`)
    when it has values, else the last epoch of its curve (PRUNED and FAIL trials keep one)."""
    if trial.values is not None and accuracy is not None:
        return trial.values[accuracy]
    curve = curve_attr(trial.user_attrs)
    return curve[-1] if curve else None


# -- the front -----------------------------------------------------------------------------------


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Non-dominated COMPLETE trials (ties kept), sorted by the first objective, best first.

    Without repeats this is Optuna's `Study.best_trials`, which counts COMPLETE trials only
    (PRUNED and FAIL trials never reach the front, whatever values they carry). With repeats
    (``search.repeats``), an architecture is one point: its trial, at the mean of its runs'
    values (`repeat_stats`); the repeat trials themselves are never front members.
    """
    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not any(Attr.REPEAT_OF in t.user_attrs for t in complete):
        return sorted(study.best_trials, key=lambda t: sign * t.values[0])
    stats = repeat_stats(study)
    base = [t for t in complete if t.number in stats]
    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
    points = [[sg * v for sg, v in zip(signs, stats[t.number].means, strict=True)] for t in base]
    mask = nondominated(points)
    front = [t for t, keep in zip(base, mask, strict=True) if keep]
    return sorted(front, key=lambda t: sign * stats[t.number].means[0])


@dataclass(frozen=True)
class RepeatStats:
    """One architecture's COMPLETE runs: its trial and the repeats that re-trained it.

    Attributes:
        number: the trial that first trained the architecture.
        runs: the runs' trial numbers, that trial first.
        train_seeds: the training seed of each run (None where not recorded).
        values: each run's objective values, in run order.
        means: the mean of each objective over the runs.
        stds: the sample standard deviation of each objective (0 with one run).
    """

    number: int
    runs: tuple[int, ...]
    train_seeds: tuple[int | None, ...]
    values: tuple[tuple[float, ...], ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]


def repeat_stats(study: optuna.Study) -> dict[int, RepeatStats]:
    """Every COMPLETE, non-repeat trial's runs (itself plus its COMPLETE repeats) and their
    mean and spread per objective. A repeat whose original did not complete counts nowhere."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    groups: dict[int, list[FrozenTrial]] = {
        t.number: [t] for t in complete if Attr.REPEAT_OF not in t.user_attrs
    }
    for t in complete:
        of = t.user_attrs.get(Attr.REPEAT_OF)
        if of in groups:
            groups[of].append(t)
    out = {}
    for number, runs in groups.items():
        values = np.array([r.values for r in runs], dtype=float)
        stds = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(values.shape[1])
        out[number] = RepeatStats(
            number=number,
            runs=tuple(r.number for r in runs),
            train_seeds=tuple(r.user_attrs.get(Attr.TRAIN_SEED) for r in runs),
            values=tuple(tuple(float(v) for v in r.values) for r in runs),
            means=tuple(float(v) for v in values.mean(axis=0)),
            stds=tuple(float(v) for v in stds),
        )
    return out


def missing_repeats(study: optuna.Study, repeats: int, base_seed: int) -> list[tuple[int, int]]:
    """(trial number, training seed) pairs still to train so that the seeds and the front
    (a search) or every `SAMPLE_REPEAT_EVERY`-th architecture (a design-space sample, tagged
    ``sample``) have ``repeats`` runs each: seeds ``base_seed + 1 .. base_seed + repeats - 1``.
    Repeats already COMPLETE, RUNNING or WAITING are not asked for again; failed ones are.

    A sample measures noise on a subset drawn without looking at accuracy (the front would
    pick the lucky runs); taking every k-th completed architecture in trial order keeps that
    subset stable as a resumed sample grows."""
    if repeats <= 1:
        return []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    originals = [t for t in complete if Attr.REPEAT_OF not in t.user_attrs]
    targets = {t.number for t in originals if t.user_attrs.get(Attr.SEED) is not None}
    if study.user_attrs.get(SAMPLE_TAG) is not None:
        sampled = [t.number for t in originals if t.user_attrs.get(Attr.SEED) is None]
        targets |= set(sorted(sampled)[::SAMPLE_REPEAT_EVERY])
    else:
        targets |= {t.number for t in front_trials(study)}
    have = set()
    live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    for t in study.get_trials(deepcopy=False, states=live):
        of = t.user_attrs.get(Attr.REPEAT_OF)
        if of is not None:
            have.add((of, t.user_attrs.get(Attr.TRAIN_SEED)))
    return [
        (n, base_seed + k)
        for n in sorted(targets)
        for k in range(1, repeats)
        if (n, base_seed + k) not in have
    ]


def nondominated(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Mask of the rows no other row dominates, in minimisation form (negate what is
    maximised); equal rows are all kept."""
    p = np.asarray(points, dtype=float)
    if p.size == 0:
        return np.zeros(len(p), dtype=bool)
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)  # le[j, i]: j is <= i everywhere
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    return ~dominated


# -- rows ----------------------------------------------------------------------------------------


def trial_row(
    t: FrozenTrial,
    objectives: Objectives,
    on_front: bool,
    repeats: RepeatStats | None = None,
) -> dict[str, Any]:
    """One trial as a flat, JSON-ready record; a stored figure that is not a number reads
    as ``None`` (see `number_attr`). With ``repeats`` (more than one run), the accuracy is the
    runs' mean and the record carries ``accuracy_std``, ``accuracy_runs`` and ``runs``."""
    ua = t.user_attrs
    node = ua.get(Attr.NODE)
    seed = ua.get(Attr.SEED)
    reason = ua.get(Attr.REASON)
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "seed": seed,
        "label": zoo.label(seed),
        "pareto": on_front,
        "params": number_attr(ua, Attr.PARAMS),
        "gflops": number_attr(ua, Attr.GFLOPS),
        "latency_ms": number_attr(ua, Attr.LATENCY_MS),
        "predicted_latency_ms": number_attr(ua, Attr.PREDICTED_LATENCY_MS),
        "epochs": number_attr(ua, Attr.EPOCHS),
        "curve": curve_attr(ua),
        "reason": None if reason is None else str(reason),
        "node": node.get("hostname") if isinstance(node, dict) else None,
        "params_sampled": t.params,
    }
    if t.values is not None:
        row["values"] = dict(zip(objectives.names, t.values, strict=True))
    row["accuracy"] = trial_accuracy(t, objectives.accuracy)
    row["repeat_of"] = ua.get(Attr.REPEAT_OF)
    row["train_seed"] = ua.get(Attr.TRAIN_SEED)
    if repeats is not None and len(repeats.runs) > 1:
        row["values"] = dict(zip(objectives.names, repeats.means, strict=True))
        row["runs"] = list(repeats.runs)
        i = objectives.accuracy
        if i is not None:
            row["accuracy"] = repeats.means[i]
            row["accuracy_std"] = repeats.stds[i]
            row["accuracy_runs"] = [v[i] for v in repeats.values]
    return row


def study_rows(study: optuna.Study, *, all_trials: bool = False) -> list[dict[str, Any]]:
    """The front (default) or every trial, seeds labelled, front first by accuracy.

    The front view keeps the references: COMPLETE seeds the front does not hold follow it,
    by accuracy, with ``reference`` set, so the published models are always there to compare
    with (a dominated seed is still the yardstick a reader wants)."""
    objectives = objectives_of(study)
    front = front_trials(study)
    on_front = {t.number for t in front}
    stats = repeat_stats(study)
    trials = study.get_trials(deepcopy=False) if all_trials else front
    rows = [trial_row(t, objectives, t.number in on_front, stats.get(t.number)) for t in trials]
    if not all_trials:
        rows.sort(key=lambda r: -(r["accuracy"] or 0.0))
        _mark_overlaps(rows)
        refs = [
            trial_row(t, objectives, False, stats.get(t.number))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number not in on_front
            and t.user_attrs.get(Attr.SEED) is not None
            and Attr.REPEAT_OF not in t.user_attrs
        ]
        for row in sorted(refs, key=lambda r: -(r["accuracy"] or 0.0)):
            rows.append({**row, "reference": True})
    return rows


def _mark_overlaps(rows: list[dict[str, Any]]) -> None:
    """Front rows sorted by accuracy: ``within_noise`` is True where a row's mean +- std
    interval overlaps its more accurate neighbour's (their order is not established)."""
    for above, row in itertools.pairwise(rows):
        a, b = above.get("accuracy_std"), row.get("accuracy_std")
        if a is None or b is None or above["accuracy"] is None or row["accuracy"] is None:
            continue
        if above["accuracy"] - a <= row["accuracy"] + b:
            row["within_noise"] = above["within_noise"] = True


def study_provenance(study: optuna.Study) -> dict[str, Any]:
    """What the study was recorded with: ``versions`` (the latest session's library versions
    and source commit) and ``data_cache`` (the proxy data's cache key and checksum); ``None``
    where not recorded (older studies, or synthetic data, which is not cached)."""
    attrs = study.user_attrs
    return {"versions": attrs.get(Attr.VERSIONS), "data_cache": attrs.get(Attr.DATA_CACHE)}


def latency_pairs(study: optuna.Study) -> list[tuple[float, float]]:
    """(measured, predicted) latency in ms of every trial that holds both figures, whatever
    its state (a trial stopped early or over budget was measured too): what
    `dimsearch.search.gate.latency_drift` judges the part table by."""
    pairs = []
    for t in study.get_trials(deepcopy=False):
        measured = number_attr(t.user_attrs, Attr.LATENCY_MS)
        predicted = number_attr(t.user_attrs, Attr.PREDICTED_LATENCY_MS)
        if measured is not None and predicted is not None:
            pairs.append((measured, predicted))
    return pairs


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state (``complete``, ``pruned``, ...), states with none left out."""
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return {k: v for k, v in counts.items() if v}


# -- where it lives ------------------------------------------------------------------------------


def storage_url(storage: str | None, name: str) -> str:
    """The storage study ``name`` lives in: as given, else the default sqlite file."""
    return storage or f"sqlite:///{STUDIES_DIR / f'{name}.db'}"


def study_file(storage: str | None, name: str) -> Path | None:
    """The sqlite file of study ``name`` (None for other storages): weights and dashboard
    artifacts are looked for beside it."""
    url = storage_url(storage, name)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_CONNECT_TIMEOUT_S = 10  # a server that does not answer is refused after this, not waited on
_SQLITE_LOCK_TIMEOUT_S = 60  # the dashboard and `show` may read while a search writes


def _is_journal(storage: str) -> bool:
    return "://" not in storage and storage.endswith(_JOURNAL_SUFFIXES)


def _parsed_url(storage: str) -> Any:
    """``storage`` as an SQLAlchemy URL whose database driver is installed, or a StudyError
    naming what was given and what a storage looks like."""
    import sqlalchemy

    expected = (
        "expected an SQLAlchemy URL such as sqlite:///studies/pit.db or "
        "postgresql://user@host/db, or a journal file ending in " + "/".join(_JOURNAL_SUFFIXES)
    )
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise StudyError(f"storage {storage!r} is not a storage URL: {expected}") from None
    try:
        url.get_dialect()
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as err:
        raise StudyError(
            f"storage {storage!r}: no database driver for {url.drivername!r} ({err}); {expected}"
        ) from None
    return url


def _engine_kwargs(url: Any, *, readonly: bool) -> dict[str, Any]:
    """How dimsearch connects to a database: a generous sqlite lock timeout (a reader may look
    while a search writes), a short connect timeout on a server, and, for a reader of a
    sqlite file, a read-only connection, so reading can never write the file."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not readonly or not url.database or url.database == ":memory:":
            return {"connect_args": {"timeout": _SQLITE_LOCK_TIMEOUT_S}}
        import sqlite3
        from urllib.parse import quote

        uri = f"file:{quote(str(Path(url.database).resolve()))}?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(
                uri, uri=True, timeout=_SQLITE_LOCK_TIMEOUT_S, check_same_thread=False
            )

        return {"creator": connect}
    # a server drops connections (restart, failover, idle timeout): each pooled connection is
    # tested before use, so one that died between two writes is replaced, not used
    if backend in ("postgresql", "mysql", "mariadb"):
        return {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {"pool_pre_ping": True}


def resolve_storage(
    storage: str | None, name: str, *, readonly: bool = False
) -> str | optuna.storages.BaseStorage:
    """Storage for study ``name``: default ``sqlite:///studies/<name>.db``; any SQLAlchemy URL;
    or a path ending in ``.log``/``.jsonl`` for Optuna's journal file storage (NFS-friendly).

    The one place a storage is opened. A bad URL is a StudyError. ``readonly`` (the readers,
    after `open_storage` checked the study is there) opens a sqlite file read-only and never
    creates Optuna's tables. A writer sets up a fresh database once, however many writers open
    it at the same moment (`_writable_rdb`)."""
    if storage is None:
        STUDIES_DIR.mkdir(exist_ok=True)
        storage = storage_url(None, name)
    if _is_journal(storage):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    url = _parsed_url(storage)
    if readonly:
        return optuna.storages.RDBStorage(
            storage, engine_kwargs=_engine_kwargs(url, readonly=True), skip_table_creation=True
        )
    return _writable_rdb(storage, url)


# Opening an SQLAlchemy storage for writing sets it up the first time: Optuna's
# `RDBStorage.__init__` creates its tables, inserts the `version_info` row and creates and stamps
# `alembic_version`, each a separate check-then-write. Two openers of one fresh database (two
# `dimsearch run`s on a cluster, or one that starts while another is setting up) race on every
# step: the loser gets an IntegrityError (duplicate `alembic_version`, `version_info` or table
# type) or "already exists". On PostgreSQL the set-up runs under a transaction-free advisory
# lock, so openers take turns; elsewhere (sqlite, MySQL) the loser opens again, and finds done
# what the winner did.
_SETUP_LOCK_KEY = 0x64696D7365617263  # "dimsearc": a PostgreSQL advisory lock, per database
_SETUP_LOCK_TIMEOUT_S = 120  # another opener holding it longer than this is stuck
_SETUP_RETRIES = 8


def _writable_rdb(storage: str, url: Any) -> optuna.storages.RDBStorage:
    """The storage at ``url`` for a writer (`run`, `sample`, the dashboard's notes), set up
    once however many open it at the same time (see above)."""
    import sqlalchemy

    kwargs = _engine_kwargs(url, readonly=False)
    if url.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(url, **kwargs)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f"SET lock_timeout = '{_SETUP_LOCK_TIMEOUT_S}s'"))
                try:
                    conn.execute(
                        sqlalchemy.select(sqlalchemy.func.pg_advisory_lock(_SETUP_LOCK_KEY))
                    )
                except sqlalchemy.exc.OperationalError:
                    raise StudyError(
                        f"storage {storage!r}: another process has been setting up Optuna's "
                        f"tables for over {_SETUP_LOCK_TIMEOUT_S} s; try again when it is done"
                    ) from None
                conn.commit()  # the lock is the session's; nothing else is held meanwhile
                try:
                    return optuna.storages.RDBStorage(storage, engine_kwargs=kwargs)
                finally:
                    conn.execute(
                        sqlalchemy.select(sqlalchemy.func.pg_advisory_unlock(_SETUP_LOCK_KEY))
                    )
                    conn.commit()
        finally:
            engine.dispose()
    for attempt in range(_SETUP_RETRIES):
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=kwargs)
        except sqlalchemy.exc.DBAPIError as err:
            raced = isinstance(err, sqlalchemy.exc.IntegrityError) or "already exists" in str(err)
            if not raced or attempt == _SETUP_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(storage: str | None, name: str, *, writable: bool = False) -> Any:
    """The storage of an existing study, for a reader (`show`, `export`, `report`, the
    dashboard): everything wrong with it is a StudyError, and nothing is created or written.

    Refused: a URL that is not one, a database kind without a driver, a sqlite or journal file
    that does not exist (``studies/<name>.db`` by default), a server that does not answer
    within a few seconds, and a database without Optuna's tables. ``writable`` (the dashboard,
    which writes notes) opens a sqlite file for writing; otherwise it is opened read-only.
    """
    default = STUDIES_DIR / f"{name}.db"
    if storage is None:
        if not _is_file(default):
            raise StudyError(f"no study {name!r}: {default} does not exist (run the space first)")
        storage = storage_url(None, name)
    if _is_journal(storage):
        if not _is_file(Path(storage)):
            raise StudyError(f"{storage}: no such journal file")
        return resolve_storage(storage, name)
    url = _parsed_url(storage)
    if url.get_backend_name() == "sqlite":
        file = url.database
        if not file or file == ":memory:":
            raise StudyError(f"storage {storage!r} names no sqlite file, so it holds no study")
        if not _is_file(Path(file)):
            raise StudyError(f"{file}: no such study file (from storage {storage!r})")
    _check_schema_present(url, storage, name)  # a reader must not create Optuna's tables
    return resolve_storage(storage, name, readonly=not writable)


_MAX_NAME = 255  # longer cannot be a file name on any common file system


def _is_file(path: Path) -> bool:
    """`Path.is_file`, false (not an OSError) for a name too long for the file system."""
    try:
        return path.is_file()
    except OSError:
        return False


def study_name_of(target: str) -> tuple[str, str | None]:
    """Interpret a STUDY argument: a space name, a ``.db`` file, or a space YAML path.

    Returns (study name, storage URL or None for the default)."""
    if len(target) > _MAX_NAME:
        raise StudyError(
            f"a STUDY must be at most {_MAX_NAME} characters (a name, a .db file or a space "
            f"YAML), got {len(target)}: {target[:40]!r}..."
        )
    path = Path(target)
    if path.suffix == ".db":
        if not _is_file(path):
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
    if directions is None:
        st = open_storage(storage, name) if storage is None or isinstance(storage, str) else storage
        try:
            return optuna.load_study(study_name=name, storage=st, sampler=sampler)
        except KeyError:
            where = storage or f"studies/{name}.db"
            raise StudyError(f"no study named {name!r} in {where}") from None
    created = _new_sqlite_file(storage, name)
    try:
        st = (
            resolve_storage(storage, name)
            if storage is None or isinstance(storage, str)
            else storage
        )
        return _create_study(name, st, directions, sampler)
    except (StorageError, *_STORAGE_ERRORS) as err:
        if created is not None:  # a full disk leaves a 0-byte file: take back what we made
            for leftover in (created, created.with_name(created.name + "-journal")):
                leftover.unlink(missing_ok=True)
        if isinstance(err, StorageError):
            raise
        raise StorageError(_storage_message(storage_url(storage, name), err)) from None


def _new_sqlite_file(storage: str | optuna.storages.BaseStorage | None, name: str) -> Path | None:
    """The sqlite file that opening ``storage`` would create (None if it exists or is no file)."""
    if storage is not None and not isinstance(storage, str):
        return None
    path = study_file(storage, name)
    return None if path is None or path.exists() else path


def _create_study(
    name: str,
    st: str | optuna.storages.BaseStorage,
    directions: list[str],
    sampler: optuna.samplers.BaseSampler | None,
) -> optuna.Study:
    """Create study ``name`` in ``st``, or load it and check it minimises and maximises what
    the space asks (another space's study under the same name would mix objectives)."""
    study = optuna.create_study(
        study_name=name, storage=st, directions=directions, sampler=sampler, load_if_exists=True
    )
    have = directions_of(study)
    if have != list(directions):
        raise StudyError(
            f"study {name!r} exists with directions {have}, but the space asks {directions}; "
            f"use another --storage or rename the space"
        )
    return study


def _check_schema_present(url: Any, storage: str, name: str) -> None:
    """Refuse to read a database that lacks any of Optuna's tables, or cannot be read at all
    (not a database, a truncated file, a server that does not answer).

    Opening an SQLAlchemy URL through Optuna creates its tables and stamps their version
    (`RDBStorage` writes the stamp even with ``skip_table_creation``): a reader pointed at a
    foreign or empty database would write into it, and one that looks while a search is still
    setting it up races that search's own set-up (seen with PostgreSQL), so a database whose
    stamp is not there yet is refused too. Optuna's table list is private
    (`optuna.storages._rdb.models`); this is the one place that reads it.
    """
    import sqlalchemy
    from optuna.storages._rdb import models

    want = set(models.BaseModel.metadata.tables)
    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url, readonly=True))
    try:
        have = set(sqlalchemy.inspect(engine).get_table_names())
    except sqlalchemy.exc.SQLAlchemyError as err:
        cause = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise StudyError(
            f"cannot read storage {storage!r}: {type(err).__name__}: "
            f"{cause[0] if cause else 'no reason given'}"
        ) from None
    finally:
        engine.dispose()
    missing = sorted(want - have)
    if missing:
        raise StudyError(
            f"no study named {name!r} in {storage}: it holds no Optuna study tables "
            f"(missing {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
        )
    if not _schema_stamped(url, "alembic_version" in have):
        raise StudyError(
            f"no study named {name!r} in {storage} yet: Optuna's tables are still being set "
            "up (a search is starting); try again in a moment"
        )


def _schema_stamped(url: Any, has_alembic: bool) -> bool:
    """Whether Optuna finished setting up the database: its `version_info` row and alembic
    revision are there. Until then, `RDBStorage`, even with ``skip_table_creation``, would
    write them itself, racing the search that is writing them (seen with PostgreSQL)."""
    import sqlalchemy
    from optuna.storages._rdb import models

    if not has_alembic:
        return False
    alembic = sqlalchemy.table("alembic_version", sqlalchemy.column("version_num"))
    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url, readonly=True))
    try:
        with engine.connect() as conn:
            version = conn.execute(sqlalchemy.select(models.VersionInfoModel.__table__)).first()
            revision = conn.execute(sqlalchemy.select(alembic.c.version_num)).first()
    except sqlalchemy.exc.SQLAlchemyError:
        return False  # a table created but not yet committed, or unreadable: not set up
    finally:
        engine.dispose()
    return version is not None and revision is not None


# -- storage faults ------------------------------------------------------------------------------

STORAGE_RETRY_S = 60.0  # how long a write waits for a database server to come back

# what a storage raises when it cannot write: SQLAlchemy's errors (Optuna wraps those of a
# commit in StorageInternalError, whose message blames "invalid data"), and a file's OSError
_STORAGE_ERRORS = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.SQLAlchemyError,
    OSError,
)


def _root_cause(err: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's and Optuna's wrappers."""
    while True:
        inner = getattr(err, "orig", None) or err.__cause__
        if inner is None or inner is err:
            return err
        err = inner


def _read_only_file(where: str) -> bool:
    """Whether ``where`` is a sqlite file (or its folder) that this process may not write.

    sqlite reports a file made read-only under an open connection (``chattr +i``) as a bare
    "disk I/O error"; asking the kernel names the real fault. ``os.access`` answers for root
    too: an immutable file or a read-only mount is refused to every user."""
    import os

    try:
        url = sqlalchemy.engine.make_url(where)
    except sqlalchemy.exc.ArgumentError:
        return False
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    path = Path(url.database)
    target = path if path.exists() else path.parent
    return target.exists() and not os.access(target, os.W_OK)


def _storage_message(where: str, err: BaseException) -> str:
    cause = _root_cause(err)
    text = " ".join(str(cause).split()) or type(cause).__name__
    if _read_only_file(where) and "read-only" not in text and "readonly" not in text:
        text = f"{text} (the file is read-only)"
    return (
        f"cannot write the study at {where}: {type(cause).__name__}: {text[:300]}; make it "
        "writable (free disk space, fix permissions, restart the server), then rerun: trials "
        "it could not close are marked failed then"
    )


def _server_may_return(err: BaseException) -> bool:
    """A database server's connection error may heal within seconds (a restart, a
    failover); a local file's (sqlite, journal: full disk, read-only) will not."""
    import sqlite3

    cause = _root_cause(err)
    return isinstance(
        err, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
    ) and not isinstance(cause, (sqlite3.Error, OSError))


def storage_call(study: optuna.Study, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one write to ``study``'s storage, riding out a database server that went away.

    A server's error is retried with growing pauses for up to `STORAGE_RETRY_S` (a restarted
    PostgreSQL is back in seconds; ``pool_pre_ping`` then hands out a fresh connection). What
    still fails, and any error of a local file, becomes a `StorageError` saying what to do.
    """
    deadline = time.monotonic() + STORAGE_RETRY_S
    pause = 0.5
    while True:
        try:
            return fn(*args, **kwargs)
        except _STORAGE_ERRORS as err:
            if not _server_may_return(err) or time.monotonic() + pause > deadline:
                raise StorageError(_storage_message(storage_where(study), err)) from err
            time.sleep(pause)
            pause = min(pause * 2, 8.0)


# -- writing -------------------------------------------------------------------------------------


def set_trial_attrs(
    study: optuna.Study, trial: optuna.Trial | FrozenTrial, attrs: dict[str, Any]
) -> None:
    """Write user attrs to a RUNNING trial, including one this process did not start
    (storage rejects updates to finished trials, so call this before ``study.tell``)."""
    handle = storage_call(study, trial_handle, study, trial)  # reads the trial: may fail too
    for key, value in attrs.items():
        storage_call(study, handle.set_user_attr, key, json_safe(value))


def recover_orphans(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a driver that died as FAIL, with the reason.

    Only one driver runs a study at a time (dimsearch's rule), so at start-up any RUNNING trial
    is an orphan: its driver was killed before it could record the outcome.
    """
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        set_trial_attrs(
            study,
            t,
            {
                Attr.REASON: "left RUNNING by a driver that stopped (killed or crashed); "
                "marked failed when the study was resumed",
                Attr.FAIL_CAUSE: FailCause.KILLED,
            },
        )
        study.tell(t.number, state=TrialState.FAIL)
        numbers.append(t.number)
    return numbers


def seeds_to_train(study: optuna.Study, names: Sequence[str]) -> list[str]:
    """The seeds of ``names`` a run must enqueue: those with no run in the study, and those
    whose every run FAILed from outside (`FailCause.EXTERNAL`: killed, interrupted, ended,
    storage), so a reference lost with a stopped run is trained again. A seed that failed
    through its own error, or is done, RUNNING or WAITING, is not enqueued again: one rerun
    after another would otherwise retrain a broken reference for ever.

    Studies written before `Attr.FAIL_CAUSE` existed say the same in the reason, which the
    rerun and the Ctrl-C path wrote in fixed words; those are read as external too."""
    runs: dict[str, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False):
        seed = t.user_attrs.get(Attr.SEED)
        if seed is not None and Attr.REPEAT_OF not in t.user_attrs:
            runs.setdefault(seed, []).append(t)
    return [n for n in names if all(_failed_from_outside(t) for t in runs.get(n, []))]


def _failed_from_outside(t: FrozenTrial) -> bool:
    if t.state != TrialState.FAIL:
        return False
    cause = t.user_attrs.get(Attr.FAIL_CAUSE)
    if cause is not None:
        return cause in FailCause.EXTERNAL
    reason = str(t.user_attrs.get(Attr.REASON, ""))
    return reason.startswith(("left RUNNING by a driver that stopped", "interrupted:"))


# -- Optuna's private parts (reached here only) --------------------------------------------------


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (unlike its number, unique across the studies of a
    storage): what a write to it, or optuna-dashboard's artifact keys, need."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``: optuna-dashboard's study pages are ``/studies/<id>``."""
    return study._study_id


def trial_handle(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> optuna.Trial:
    """A live `optuna.Trial` on ``trial`` of ``study``, which can set user attrs while it is
    RUNNING (even if another process started it) and carries optuna-dashboard notes."""
    return optuna.trial.Trial(study, trial_id(trial))


def storage_where(study: optuna.Study) -> str:
    """Where ``study`` is stored, for messages: its database URL (password hidden), else
    its name (Optuna keeps the storage object private)."""
    storage = getattr(study, "_storage", None)
    url = getattr(getattr(storage, "_backend", storage), "url", None)
    if not url:
        return f"study {study.study_name!r}"
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs (where optuna-dashboard keeps notes and trial artifacts)."""
    return study._storage.get_study_system_attrs(study_id(study))


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    """Set one study system attr (`optuna.Study` has no public setter for them)."""
    study._storage.set_study_system_attr(study_id(study), key, value)
