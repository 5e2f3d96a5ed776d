"""A recorded design-space sample as one small, versioned JSON file: the sample table.

pycls's method rests on one primitive: a uniform sample of a design space with every model
trained the same way. A study holds such a sample, but it is a live sqlite file full of Ray
ids, weight paths and half-finished trials. The sample table keeps only what the statistics
and replays need (each architecture, its Optuna params, its costs, its per-epoch accuracy and
seconds), rounded to what the measurements can resolve, so a sample of a few hundred
architectures is a few hundred KB that goes into git beside the benchmark that recorded it.

Several records may share one architecture: retraining it with another ``train_seed`` (a
repeat) is how the seed noise is measured. Architectures are therefore stored once, in
``archs``, and each record points at one by index; `SampleTable.groups` hands the repeats back
together. The format is in docs/sample-format.md; this module reads only what it wrote
(`FORMAT`, `VERSION`) and says which key of which file is wrong otherwise.

Reading a table needs neither torch nor a study: ``SampleTable.load(path)``.
"""

from __future__ import annotations

import gzip
import json
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dimsearch._values import is_int, is_number
from dimsearch.errors import DimsearchError
from dimsearch.search.study import Attr, curve_attr, number_attr

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "FORMAT",
    "TRAIN_SEED_ATTR",
    "VERSION",
    "SampleError",
    "SampleRecord",
    "SampleTable",
    "arch_key",
    "open_sample",
]

FORMAT = "dimsearch-sample"
VERSION = 1
SUFFIXES = (".json", ".json.gz")
# The user attr a repeat records its training seed under; trials without it trained with the
# space's `train.seed`.
TRAIN_SEED_ATTR = "train_seed"

# Stored precision: what the measurements resolve, not what the floats carry. A validation
# set of 2000 images moves accuracy in steps of 0.05 points; a second is timed to 10 ms.
_DIGITS = {"accuracy": 2, "seconds": 2, "gflops": 6, "latency_ms": 3}


class SampleError(DimsearchError):
    """A sample table cannot be written or read; the message names the file and the key."""


def arch_key(arch: dict[str, Any]) -> str:
    """The identity of an architecture: its `ArchConfig` dict without ``name`` (a label, the
    zoo name or ``trial7``, not part of the architecture), as canonical JSON. Records with
    equal keys are repeats of one architecture, also across tables."""
    return json.dumps({k: v for k, v in arch.items() if k != "name"}, sort_keys=True)


def _rounded(values: Any, digits: int) -> tuple[float, ...]:
    return tuple(round(float(v), digits) for v in values)


def _round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class SampleRecord:
    """One trained architecture: a trial of the study, at the table's stored precision.

    Attributes:
        number: the trial number in the study that recorded it.
        seed: the zoo name of a seeded fixed point (``pit_ti``), or None for a sampled one.
        train_seed: the training seed (weight init, data order, augmentation).
        arch: the `ArchConfig` dict, without its ``name`` (see `arch_key`).
        optuna_params: the trial's Optuna parameters (``stages``, ``s1.depth``, ``pool``...).
        params: parameter count at the target resolution.
        gflops: GFLOPs at the target resolution.
        latency_ms: measured latency (ms), or None when none was measured.
        curve: held-out top-1 (%) after each epoch; its last value is the accuracy.
        epoch_seconds: wall seconds of each epoch (train + eval).
        epoch_cpu_seconds: CPU seconds of each epoch (steadier on a shared machine).
        state: the trial state (``COMPLETE``).
    """

    number: int
    seed: str | None
    train_seed: int
    arch: dict[str, Any]
    optuna_params: dict[str, Any]
    params: int | None
    gflops: float | None
    latency_ms: float | None
    curve: tuple[float, ...]
    epoch_seconds: tuple[float, ...] = ()
    epoch_cpu_seconds: tuple[float, ...] = ()
    state: str = "COMPLETE"

    def __post_init__(self) -> None:
        # normalised on construction, so a record equals itself after a save/load round trip
        put = object.__setattr__
        put(self, "arch", {k: v for k, v in self.arch.items() if k != "name"})
        put(self, "curve", _rounded(self.curve, _DIGITS["accuracy"]))
        put(self, "epoch_seconds", _rounded(self.epoch_seconds, _DIGITS["seconds"]))
        put(self, "epoch_cpu_seconds", _rounded(self.epoch_cpu_seconds, _DIGITS["seconds"]))
        put(self, "gflops", _round_or_none(self.gflops, _DIGITS["gflops"]))
        put(self, "latency_ms", _round_or_none(self.latency_ms, _DIGITS["latency_ms"]))
        if self.params is not None:
            put(self, "params", int(self.params))

    @property
    def accuracy(self) -> float:
        """Final held-out top-1 (%)."""
        return self.curve[-1]


@dataclass(frozen=True)
class SampleTable:
    """A recorded sample: the records plus what is needed to know how they were made.

    Attributes:
        study: name of the study it came from.
        epochs: the training budget; every curve has this many values.
        objectives: the study's objective names (``accuracy``, ``gflops``, ``latency_ms``).
        space: the validated space dict the study recorded (data, train, budgets...).
        records: one per trained run, in trial order.
        made_by: ``command`` (that wrote the file), ``created`` (UTC, ISO 8601) and
            ``versions`` (dimsearch, python, optuna; torch: the one that trained).
        excluded: trials of the study left out, by reason (``running``, ``pruned``...).
    """

    study: str
    epochs: int
    objectives: tuple[str, ...]
    space: dict[str, Any]
    records: tuple[SampleRecord, ...]
    made_by: dict[str, Any] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)

    def groups(self) -> list[tuple[SampleRecord, ...]]:
        """The records of each architecture together (repeats across training seeds), in
        order of first appearance."""
        by_key: dict[str, list[SampleRecord]] = {}
        for r in self.records:
            by_key.setdefault(arch_key(r.arch), []).append(r)
        return [tuple(g) for g in by_key.values()]

    # -- from a study --------------------------------------------------------------------------

    @classmethod
    def from_study(cls, study: optuna.Study, *, command: str = "") -> SampleTable:
        """The COMPLETE trials of ``study`` whose curve covers the full budget.

        A trial's budget is its ``epochs_budget`` attr (else the space's ``train.epochs``);
        the table's is the one most COMPLETE trials share. PRUNED, FAIL and RUNNING trials,
        and COMPLETE ones of another budget, with a shorter curve or without an architecture,
        are counted in ``excluded`` by reason instead.
        """
        import optuna as _optuna
        from optuna.trial import TrialState

        from dimsearch import __version__

        space = study.user_attrs.get(Attr.SPACE)
        space = space if isinstance(space, dict) else {}
        train = space.get("train") if isinstance(space.get("train"), dict) else {}
        trials = study.get_trials(deepcopy=False)

        def budget_of(t: FrozenTrial) -> int | None:
            b = t.user_attrs.get(Attr.EPOCHS_BUDGET, train.get("epochs"))
            return b if is_int(b) and b >= 1 else None

        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        budgets = Counter(b for b in map(budget_of, complete) if b is not None)
        if not budgets:
            states = Counter(t.state.name.lower() for t in trials)
            raise SampleError(
                f"study {study.study_name!r} has no COMPLETE trial with a training budget "
                f"(trials: {dict(states) or 'none'})"
            )
        epochs = max(budgets, key=lambda b: (budgets[b], b))
        default_seed = train.get("seed") if is_int(train.get("seed")) else 0
        records, excluded, torch_version = [], {}, None

        def skip(reason: str) -> None:
            excluded[reason] = excluded.get(reason, 0) + 1

        for t in trials:
            if t.state != TrialState.COMPLETE:
                skip(t.state.name.lower())
                continue
            ua = t.user_attrs
            curve = curve_attr(ua)
            arch = ua.get(Attr.ARCH)
            if not isinstance(arch, dict):
                skip("no arch")
                continue
            if budget_of(t) != epochs:
                skip(f"budget not {epochs} epochs")
                continue
            if len(curve) != epochs:
                skip("curve shorter than the budget")
                continue
            seconds = _number_list(ua.get(Attr.EPOCH_SECONDS), epochs)
            cpu = _number_list(ua.get(Attr.EPOCH_CPU_SECONDS), epochs)
            seed = ua.get(Attr.SEED)
            train_seed = ua.get(TRAIN_SEED_ATTR)
            params = number_attr(ua, Attr.PARAMS)
            latency = ua.get(Attr.LATENCY)
            if torch_version is None and isinstance(latency, dict):
                torch_version = latency.get("torch_version")
            records.append(
                SampleRecord(
                    number=t.number,
                    seed=seed if isinstance(seed, str) else None,
                    train_seed=train_seed if is_int(train_seed) else default_seed,
                    arch=arch,
                    optuna_params=dict(t.params),
                    params=None if params is None else int(params),
                    gflops=number_attr(ua, Attr.GFLOPS),
                    latency_ms=number_attr(ua, Attr.LATENCY_MS),
                    curve=tuple(curve),
                    epoch_seconds=seconds,
                    epoch_cpu_seconds=cpu,
                    state=t.state.name,
                )
            )
        objectives = study.user_attrs.get(Attr.OBJECTIVES)
        versions = {
            "dimsearch": __version__,
            "python": platform.python_version(),
            "optuna": _optuna.__version__,
        }
        if isinstance(torch_version, str):
            versions["torch"] = torch_version
        return cls(
            study=study.study_name,
            epochs=epochs,
            objectives=tuple(objectives) if isinstance(objectives, list) else (),
            space=space,
            records=tuple(records),
            made_by={
                "command": command,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions,
            },
            excluded=excluded,
        )

    # -- the file ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The file's content: architectures stored once, records pointing at them."""
        archs: dict[str, int] = {}
        rows = []
        for r in self.records:
            index = archs.setdefault(arch_key(r.arch), len(archs))
            rows.append(
                {
                    "number": r.number,
                    "seed": r.seed,
                    "train_seed": r.train_seed,
                    "arch": index,
                    "optuna_params": r.optuna_params,
                    "params": r.params,
                    "gflops": r.gflops,
                    "latency_ms": r.latency_ms,
                    "curve": list(r.curve),
                    "epoch_seconds": list(r.epoch_seconds),
                    "epoch_cpu_seconds": list(r.epoch_cpu_seconds),
                    "state": r.state,
                }
            )
        return {
            "format": FORMAT,
            "version": VERSION,
            "study": self.study,
            "epochs": self.epochs,
            "objectives": list(self.objectives),
            "made_by": self.made_by,
            "excluded": self.excluded,
            "space": self.space,
            "archs": [json.loads(k) for k in archs],
            "records": rows,
        }

    def save(self, path: str | Path) -> int:
        """Write the table to ``path`` (``.json``, or ``.json.gz`` compressed); returns its size
        in bytes. One architecture and one record per line, so a diff shows what changed."""
        path = Path(path)
        if not path.name.endswith(SUFFIXES):
            raise SampleError(f"{path}: a sample table file ends in .json or .json.gz")
        d = self.to_dict()
        compact = {"separators": (",", ":"), "allow_nan": False}
        head = ",\n".join(
            f"{json.dumps(k)}: {json.dumps(v, **compact)}"
            for k, v in d.items()
            if k not in ("archs", "records")
        )
        lists = ",\n".join(
            f'"{k}": [\n' + ",\n".join(json.dumps(x, **compact) for x in d[k]) + "\n]"
            for k in ("archs", "records")
        )
        data = ("{\n" + head + ",\n" + lists + "\n}\n").encode()
        if path.name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)  # mtime 0: the same table, the same bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return len(data)

    @classmethod
    def load(cls, path: str | Path) -> SampleTable:
        """Read a table written by `save` (compressed or not); a file of another format or
        version, or with a missing or ill-typed key, is a `SampleError` naming the key."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise SampleError(f"{path}: cannot read it ({err.strerror or err})") from None
        try:
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            d = json.loads(raw)
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise SampleError(f"{path}: not a readable sample table ({err})") from None
        except json.JSONDecodeError as err:
            raise SampleError(f"{path}: not JSON (line {err.lineno}: {err.msg})") from None
        return _parse(d, _Reader(path))


def _number_list(value: Any, n: int) -> tuple[float, ...]:
    """``value`` if it is a list of ``n`` numbers, else ``()`` (an older study, or none)."""
    if isinstance(value, list) and len(value) == n and all(is_number(v) for v in value):
        return tuple(value)
    return ()


# -- reading, with errors that name the key ---------------------------------------------------


class _Reader:
    """Checks one key at a time and raises a one-line `SampleError` naming file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, rule: str) -> SampleError:
        return SampleError(f"{self.path}: `{key}` {rule}")

    def get(
        self, d: dict[str, Any], key: str, where: str, ok: Callable[[Any], bool], what: str
    ) -> Any:
        name = f"{where}.{key}" if where else key
        if key not in d:
            raise self.fail(name, "is missing")
        value = d[key]
        if not ok(value):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise self.fail(name, f"must be {what}, got {shown}")
        return value


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(is_number(x) for x in v)


def _opt_number(v: Any) -> bool:
    return v is None or is_number(v)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _counts(v: Any) -> bool:
    return isinstance(v, dict) and all(is_int(x) for x in v.values())


def _parse(d: Any, rd: _Reader) -> SampleTable:
    if not isinstance(d, dict):
        raise SampleError(f"{rd.path}: a sample table is a JSON object, got {type(d).__name__}")
    fmt = rd.get(d, "format", "", lambda v: v == FORMAT, repr(FORMAT))
    version = rd.get(d, "version", "", is_int, "an integer")
    if version != VERSION:
        raise rd.fail(
            "version", f"is {version}, but this dimsearch reads {fmt} version {VERSION} only"
        )
    epochs = rd.get(d, "epochs", "", lambda v: is_int(v) and v >= 1, "a positive integer")
    archs = rd.get(d, "archs", "", lambda v: isinstance(v, list), "a list")
    for i, a in enumerate(archs):
        if not isinstance(a, dict):
            raise rd.fail(f"archs[{i}]", f"must be an ArchConfig dict, got {json.dumps(a)[:40]}")
    records = []
    for i, r in enumerate(rd.get(d, "records", "", lambda v: isinstance(v, list), "a list")):
        at = f"records[{i}]"
        if not isinstance(r, dict):
            raise rd.fail(at, "must be an object")

        def get(key: str, ok: Callable[[Any], bool], what: str, r: dict = r, at: str = at) -> Any:
            return rd.get(r, key, at, ok, what)

        index = get("arch", lambda v: is_int(v) and 0 <= v < len(archs), "an index into archs")
        curve = get("curve", lambda v: _numbers(v) and len(v) == epochs, f"{epochs} numbers")
        timed = (lambda v: _numbers(v) and len(v) in (0, epochs), f"{epochs} numbers or []")
        records.append(
            SampleRecord(
                number=get("number", is_int, "an integer"),
                seed=get("seed", lambda v: v is None or isinstance(v, str), "a name or null"),
                train_seed=get("train_seed", is_int, "an integer"),
                arch=archs[index],
                optuna_params=get("optuna_params", lambda v: isinstance(v, dict), "an object"),
                params=get("params", lambda v: v is None or is_int(v), "an integer or null"),
                gflops=get("gflops", _opt_number, "a number or null"),
                latency_ms=get("latency_ms", _opt_number, "a number or null"),
                curve=tuple(curve),
                epoch_seconds=tuple(get("epoch_seconds", *timed)),
                epoch_cpu_seconds=tuple(get("epoch_cpu_seconds", *timed)),
                state=get("state", lambda v: isinstance(v, str), "a trial state name"),
            )
        )
    return SampleTable(
        study=rd.get(d, "study", "", lambda v: isinstance(v, str), "a string"),
        epochs=epochs,
        objectives=tuple(rd.get(d, "objectives", "", _str_list, "a list of names")),
        space=rd.get(d, "space", "", lambda v: isinstance(v, dict), "an object"),
        records=tuple(records),
        made_by=rd.get(d, "made_by", "", lambda v: isinstance(v, dict), "an object"),
        excluded=rd.get(d, "excluded", "", _counts, "an object of counts"),
    )


def open_sample(target: str, storage: str | None = None) -> SampleTable:
    """A sample from a table file (``.json``, ``.json.gz``) or from a study (a space name,
    ``studies/<name>.db`` or the space YAML, in ``storage`` if given)."""
    if target.endswith(SUFFIXES):
        return SampleTable.load(target)
    from dimsearch.search.study import open_study, study_name_of

    name, default_storage = study_name_of(target)
    return SampleTable.from_study(open_study(name, storage or default_storage))
