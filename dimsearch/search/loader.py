"""`load_space`: a space file read, checked section by section, and made a `SearchSpace`.

Everything is checked before anything else happens (no study, no Ray, no dataset), so a typo
costs a second, not a half-finished study; every error is a `SpaceError` naming the file and
the key path (``spaces/pit.yaml: arch.depth.low must be ...``). The settings sections are
checked by their `dimsearch._rules.Rule` tables (`dimsearch.search.settings`,
`dimsearch.search.budgets`), ``arch:`` by the parameter vocabulary
(`dimsearch.search._params`), ``data:`` and ``train:`` by `DataConfig` and `TrainConfig`.
Then the seeds are checked against the finished space: each must be a point of it, and the
budgets must admit at least one.

Loading imports the training settings (`dimsearch.train.config`) and, for the seeds, Optuna;
never torch by itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dimsearch._rules import Rule, Where, check_keys, check_section, kind_name
from dimsearch.errors import DataError, DimsearchError, LatencyError, SpaceError, TrainingError
from dimsearch.search._params import PARAMS, REQUIRED, Spec, parse_decl
from dimsearch.search.budgets import BUDGET_RULES, Budgets
from dimsearch.search.settings import (
    EARLY_STOPPING_RULES,
    KIND_KEYS,
    LATENCY_RULES,
    OBJECTIVES,
    RESOURCE_RULES,
    SAMPLER_RULES,
    SEARCH_RULES,
    EarlyStopping,
    LatencySettings,
    Resources,
    SamplerSettings,
    SearchSettings,
    check_kind_keys,
)
from dimsearch.search.space import SearchSpace

if TYPE_CHECKING:
    from dimsearch.data.config import DataConfig
    from dimsearch.train.config import TrainConfig

__all__ = [
    "NAME_MAX",
    "NAME_PATTERN",
    "NAME_RULE",
    "TOP_DEFAULTS",
    "TOP_KEYS",
    "TOP_RULES",
    "load_space",
    "parse_space",
    "read_yaml",
    "space_from_dict",
]

# The study name becomes a file name (studies/<name>.db, at most 255 bytes on every common
# file system), an Optuna study name and a dashboard label: 64 characters is plenty for all.
NAME_PATTERN = "^[a-z0-9_-]+$"
NAME_MAX = 64
_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = Rule(
    "str",
    low=1,
    high=NAME_MAX,
    text=f"1 to {NAME_MAX} characters of [a-z0-9_-] (it names the study file)",
    test=lambda v: bool(_NAME_RE.match(v)),
    schema_extra={"pattern": NAME_PATTERN},
)

TOP_KEYS = (
    "name",
    "description",
    "target_img_size",
    "num_classes",
    "arch",
    "objectives",
    "budgets",
    "seeds",
    "latency",
    "data",
    "train",
    "early_stopping",
    "sampler",
    "search",
    "resources",
)
# The top-level keys that are plain values; the others are sections or lists.
TOP_RULES = {
    "description": Rule("str"),
    # data.img_size's bounds (no patch stem leaves a grid below 8 px), and 4096 for deployment
    "target_img_size": Rule("int", low=8, high=4096),
    "num_classes": Rule("int", low=1, high=100_000),
}
TOP_DEFAULTS = {"description": "", "target_img_size": 224, "num_classes": 1000}


class _StrictLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader, plus an error for a key written twice.

    Plain YAML keeps the last of two ``depth:`` entries silently; in a search space that would
    search something other than what the reader of the file sees.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key; SafeLoader reports it properly below
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path, error: type[DimsearchError] = SpaceError) -> Any:
    """The YAML document in ``path``, read the one way dimsearch reads YAML: safe loading
    (a ``!!python/...`` tag is an error, never an object built or a command run), and a key
    written twice is an error.

    Raises:
        ``error``: the file cannot be read or is not valid YAML, in one line naming the file,
            the line and column, and the problem.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{source}: not a UTF-8 text file (byte {err.start}); expected YAML") from None
    except OSError as err:
        raise error(f"{source}: cannot be read ({err.strerror or err})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise error(f"{source}: not valid YAML{at}: {problem}") from None


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file; nothing else (no study, no storage) is touched.

    Raises:
        SpaceError: the file is missing, not YAML, not a mapping, or any setting is invalid;
            the message names the file, the key path and what was expected.
    """
    source = str(path)
    p = Path(path)
    if not p.is_file():
        raise SpaceError(f"{source}: no such space file")
    return parse_space(read_yaml(p), Where(source), p)


def space_from_dict(
    data: Any, source: str = "<space>", path: str | Path | None = None
) -> SearchSpace:
    """Validate a space mapping (a parsed YAML file, or `SearchSpace.to_dict` output, as a
    study stores it).

    Args:
        data: the mapping.
        source: how errors name it (the file name for `load_space`).
        path: the file, if any; its stem is the default ``name``.

    Raises:
        SpaceError: anything invalid, naming ``source`` and the key path.
    """
    return parse_space(data, Where(source), None if path is None else Path(path))


def parse_space(data: Any, where: Where, path: Path | None = None) -> SearchSpace:
    """A space mapping (a parsed file, or `SearchSpace.to_dict` output) checked and built.

    Every section is checked, then the seeds against the finished space.

    Raises:
        SpaceError: naming ``where``'s file and the key path.
    """
    if data is None:
        raise where.error("is empty; a space file is a YAML mapping with at least `arch:`")
    if not isinstance(data, Mapping):
        raise where.error(
            f"must be a YAML mapping of space settings ({', '.join(TOP_KEYS)}), "
            f"got {kind_name(data)}"
        )
    check_keys(data, where, TOP_KEYS)
    if "arch" not in data:
        raise (where / "arch").error("is missing: a space must declare its architecture parameters")

    name = _name(data, where, path)
    top = {
        key: rule.parse(data.get(key, TOP_DEFAULTS[key]), where / key)
        for key, rule in TOP_RULES.items()
    }
    objectives = _objectives(data.get("objectives", ["accuracy", "gflops"]), where / "objectives")
    budgets = Budgets(**check_section(data.get("budgets"), where / "budgets", BUDGET_RULES))
    latency = _latency(data.get("latency"), where)
    data_cfg, train_cfg = _proxy_settings(data, where)
    early = _early_stopping(data.get("early_stopping"), where / "early_stopping", train_cfg)
    sampler = _with_kind(
        data.get("sampler"), where / "sampler", SAMPLER_RULES, SamplerSettings, "sampler"
    )
    search = SearchSettings(**check_section(data.get("search"), where / "search", SEARCH_RULES))
    resources = Resources(
        **check_section(data.get("resources"), where / "resources", RESOURCE_RULES)
    )
    params, max_stages = _arch(data["arch"], where / "arch")
    seeds = _seed_names(data.get("seeds", []), where / "seeds")

    space = SearchSpace(
        name=name,
        description=top["description"],
        target_img_size=top["target_img_size"],
        num_classes=top["num_classes"],
        params=params,
        max_stages=max_stages,
        objectives=objectives,
        budgets=budgets,
        seeds=seeds,
        latency=latency,
        data=data_cfg,
        train=train_cfg,
        early_stopping=early,
        sampler=sampler,
        search=search,
        resources=resources,
        path=path,
    )
    _check_seeds(space, where)
    return space


def _latency(raw: Any, where: Where) -> LatencySettings:
    """The ``latency:`` section: each key by its rule, then the rules between keys
    (`LatencySettings` states them; its error gets the file's name here)."""
    keys = check_section(raw, where / "latency", LATENCY_RULES)
    try:
        return LatencySettings(**keys)
    except LatencyError as err:
        raise where.error(str(err)) from None


def _name(data: Mapping[str, Any], where: Where, path: Path | None) -> str:
    if "name" in data:
        name = data["name"]
        NAME_RULE.check(name, where / "name")
        return name
    if path is None:
        raise (where / "name").error("is missing (and there is no file name to default to)")
    if not NAME_RULE.accepts(path.stem):
        raise (where / "name").error(
            f"is missing and the file stem {path.stem!r} is not a valid study name; set "
            f"`name:` to {NAME_RULE.expected}"
        )
    return path.stem


def _objectives(raw: Any, where: Where) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise where.error(f"must be a non-empty list drawn from {list(OBJECTIVES)}, got {raw!r}")
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name not in OBJECTIVES:
            raise (where / i).error(f"must be one of {list(OBJECTIVES)}, got {name!r}")
        if name in raw[:i]:
            raise (where / i).error(f"repeats {name!r}")
    if "accuracy" not in raw:
        raise where.error(
            f"must include 'accuracy' (the proxy accuracy is what trials are trained for), "
            f"got {raw}"
        )
    return tuple(raw)


def _proxy_settings(data: Mapping[str, Any], where: Where) -> tuple[DataConfig, TrainConfig]:
    """``data:`` and ``train:`` through their own parsers; their errors get the file name."""
    from dimsearch.data.config import DataConfig
    from dimsearch.train.config import TrainConfig

    try:
        data_cfg = DataConfig.from_dict(data.get("data"), where="data")
        train_cfg = TrainConfig.from_dict(data.get("train"), where="train")
    except (DataError, TrainingError) as err:
        raise where.error(str(err)) from None
    return data_cfg, train_cfg


def _with_kind(raw: Any, where: Where, rules: Mapping[str, Rule], cls: type, kind_keys: str) -> Any:
    """A section with a ``kind`` (sampler, early stopping): its keys, then the kind's keys."""
    section = cls(**check_section(raw, where, rules))
    check_kind_keys(raw, section.kind, where, KIND_KEYS[kind_keys])
    return section


def _early_stopping(raw: Any, where: Where, train: TrainConfig) -> EarlyStopping:
    early = _with_kind(raw, where, EARLY_STOPPING_RULES, EarlyStopping, "early_stopping")
    if early.kind != "none" and early.grace_period > train.epochs:
        raise (where / "grace_period").error(
            f"must be <= train.epochs (the last rung), got grace_period="
            f"{early.grace_period}, epochs={train.epochs}"
        )
    return dataclasses.replace(early, max_t=train.epochs)


def _arch(raw: Any, where: Where) -> tuple[dict[str, Spec], int]:
    """The ``arch:`` declarations, expanded to one `Spec` per Optuna parameter name."""
    if not isinstance(raw, Mapping):
        raise where.error(f"must be a mapping of parameter declarations, got {kind_name(raw)}")
    check_keys(
        raw, where, list(PARAMS), "is not a parameter of the vocabulary; known keys are {known}"
    )
    if "stages" not in raw:
        raise (where / "stages").error("is missing: the space must declare it (number of stages)")
    stages = parse_decl(PARAMS["stages"], raw["stages"], where / "stages")
    max_stages = stages.upper()
    specs: dict[str, Spec] = {}
    for key, param in PARAMS.items():
        w = where / key
        numbers = range(param.first_stage, max_stages + 1) if param.per_stage else ()
        if key not in raw:
            if param.default is REQUIRED and (not param.per_stage or numbers):
                raise w.error(f"is missing: the space must declare it ({param.doc})")
            decl = Spec("const", value=param.default)
        elif isinstance(raw[key], list) and param.per_stage:
            items = raw[key]
            if len(items) != len(numbers):
                first = f"s{param.first_stage}"
                raise w.error(
                    f"lists {len(items)} declarations but the stages it applies to are "
                    f"{first}..s{max_stages} ({len(numbers)}): give one per stage, or one "
                    "declaration for all stages"
                )
            for i, (number, item) in enumerate(zip(numbers, items, strict=True)):
                specs[param.name(number)] = parse_decl(param, item, w / i)
            continue
        else:
            decl = parse_decl(param, raw[key], w) if key != "stages" else stages
        if param.per_stage:
            for number in numbers:
                specs[param.name(number)] = decl
        else:
            specs[key] = decl
    return specs, max_stages


def _seed_names(raw: Any, where: Where) -> tuple[str, ...]:
    from dimsearch import zoo

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.error(f"must be a list of zoo model names, got {kind_name(raw)}")
    known = zoo.names()
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name not in known:
            raise (where / i).error(f"{name!r} is not in the zoo; known: {', '.join(known)}")
        if name in raw[:i]:
            raise (where / i).error(f"repeats {name!r}")
    return tuple(raw)


def _check_seeds(space: SearchSpace, where: Where) -> None:
    """Every seed must be a point of the space; the budgets must admit at least one."""
    from dimsearch import zoo

    over = []
    for i, name in enumerate(space.seeds):
        cfg = zoo.get(name)
        try:
            space.params_of(cfg)
        except SpaceError as err:
            raise (where / "seeds" / i).error(f"cannot be expressed in the space: {err}") from None
        over.append((name, space.budget_violations(cfg)))
    if over and all(reasons for _, reasons in over):
        listed = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in over)
        raise (where / "budgets").error(
            f"exclude every seed, so the search could not start from any known model: {listed} "
            f"(at {space.target_img_size} px, {space.num_classes} classes)"
        )
