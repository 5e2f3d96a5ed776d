"""The JSON Schema of a space file, made from the rules `load_space` checks it with.

``dimsearch schema`` prints it; an editor that knows JSON Schema (VS Code's YAML extension,
anything built on yaml-language-server) then completes keys, shows defaults and the rule of
each key, and marks a typo before the file is ever loaded. Every key's schema comes from the
same `dimsearch._rules.Rule` the loader applies (`Rule.schema`), and the parameter
declarations from the vocabulary (`dimsearch.search._params.PARAMS`), so the two cannot drift
apart.

The schema is looser than the loader, never stricter: what JSON Schema cannot say is left to
`load_space` (rules between keys such as ``min_lr <= lr``, the length of a per-stage list,
``head_mult`` only being required for spaces with more than one stage, the seeds being
points of the space). A file the loader accepts validates, as an editor reads it (YAML 1.2):
a YAML 1.1 reader such as PyYAML sees ``1e-3`` as a string, which the loader takes for a
number key and the schema does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dimsearch._rules import Rule, section_schema
from dimsearch.search._params import PARAMS, REQUIRED, Param
from dimsearch.search.budgets import BUDGET_RULES, Budgets
from dimsearch.search.loader import NAME_RULE, TOP_DEFAULTS, TOP_RULES
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
)

__all__ = ["SCHEMA_DIALECT", "space_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def space_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a space file, as a JSON-ready dict."""
    from dimsearch import zoo
    from dimsearch.data.config import FIELD_RULES as DATA_RULES
    from dimsearch.data.config import DataConfig
    from dimsearch.train.config import FIELD_RULES as TRAIN_RULES
    from dimsearch.train.config import TrainConfig

    data = _section(DATA_RULES, DataConfig, "the proxy dataset (DataConfig)")
    data["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": "imagefolder"}}, "required": ["kind"]},
            "then": {"required": ["root"], "properties": {"root": {"type": "string"}}},
        }
    ]
    top = {key: {**rule.schema(), "default": TOP_DEFAULTS[key]} for key, rule in TOP_RULES.items()}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "dimsearch search space",
        "description": "A search-space file of dimsearch (docs/spaces.md); `dimsearch schema` "
        "prints this schema, `dimsearch run` loads the file.",
        "type": "object",
        "required": ["arch"],
        "additionalProperties": False,
        "properties": {
            "name": {
                **NAME_RULE.schema(),
                "description": "study name (it names studies/<name>.db); default the file stem",
            },
            **top,
            "arch": _arch_schema(),
            "objectives": {
                "type": "array",
                "items": {"enum": list(OBJECTIVES)},
                "minItems": 1,
                "uniqueItems": True,
                "contains": {"const": "accuracy"},
                "default": ["accuracy", "gflops"],
                "description": "objectives in study order; accuracy is required",
            },
            "budgets": _section(BUDGET_RULES, Budgets, "upper limits at target_img_size"),
            "seeds": {
                "type": ["array", "null"],
                "items": {"enum": list(zoo.names())},
                "uniqueItems": True,
                "description": "zoo models trained first; each must be a point of the space",
            },
            "latency": _section(LATENCY_RULES, LatencySettings, "how latency is measured"),
            "data": data,
            "train": _section(TRAIN_RULES, TrainConfig, "the proxy training (TrainConfig)"),
            "early_stopping": _kind_section(
                EARLY_STOPPING_RULES, EarlyStopping, KIND_KEYS["early_stopping"], "Ray Tune ASHA"
            ),
            "sampler": _kind_section(
                SAMPLER_RULES, SamplerSettings, KIND_KEYS["sampler"], "the Optuna sampler"
            ),
            "search": _section(SEARCH_RULES, SearchSettings, "how much one `dimsearch run` does"),
            "resources": _section(RESOURCE_RULES, Resources, "Ray resources of one trial"),
        },
    }


def _section(rules: Mapping[str, Rule], owner: type, description: str) -> dict[str, Any]:
    """A settings section; left blank (null) it takes every default."""
    out = section_schema(rules, owner, description)
    out["type"] = ["object", "null"]
    return out


def _kind_section(
    rules: Mapping[str, Rule],
    owner: type,
    kind_keys: Mapping[str, Sequence[str]],
    description: str,
) -> dict[str, Any]:
    """A section with a ``kind``: each kind takes only its own keys."""
    out = _section(rules, owner, description)
    default = owner().kind
    branches = []
    for kind, keys in kind_keys.items():
        condition: dict[str, Any] = {"properties": {"kind": {"const": kind}}}
        if kind != default:  # an omitted kind is the default one
            condition["required"] = ["kind"]
        branches.append({"if": condition, "then": {"propertyNames": {"enum": ["kind", *keys]}}})
    out["allOf"] = branches
    return out


def _arch_schema() -> dict[str, Any]:
    required = [k for k, p in PARAMS.items() if p.default is REQUIRED and p.first_stage <= 1]
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": {key: _param_schema(param) for key, param in PARAMS.items()},
        "description": "the architecture parameters: each a constant, {choices: [...]} or "
        "{low, high, step, log}; per-stage keys also take a list, one per stage",
    }


def _param_schema(param: Param) -> dict[str, Any]:
    """One ``arch:`` key: a constant, a categorical or a range (numbers only), per stage too."""
    value = param.rule.schema()
    decls: list[dict[str, Any]] = [
        value,
        {
            "type": "object",
            "properties": {"choices": {"type": "array", "items": value, "minItems": 1}},
            "required": ["choices"],
            "additionalProperties": False,
        },
    ]
    if param.kind in ("int", "float"):
        integer = param.kind == "int"
        step = (
            {"type": "integer", "minimum": 1}
            if integer
            else {"type": "number", "exclusiveMinimum": 0}
        )
        decls.append(
            {
                "type": "object",
                "properties": {
                    "low": value,
                    "high": value,
                    "step": step,
                    "log": {"type": "boolean"},
                },
                "required": ["low", "high"],
                "additionalProperties": False,
            }
        )
    if param.per_stage:
        decls.append({"type": "array", "items": {"anyOf": list(decls)}, "minItems": 1})
    out: dict[str, Any] = {"anyOf": decls, "description": f"{param.doc} (when: {param.when})"}
    if param.default is not REQUIRED:
        out["default"] = param.default
    return out
