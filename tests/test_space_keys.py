"""No accepted option that does nothing: every key a space file accepts changes what runs.

The walk takes every key the loader accepts (the rule tables of each section and the ``arch:``
vocabulary), changes it in spaces/pit.yaml to another valid value, and checks that something a
search runs with changes: the trial's payload (data, training, latency, sizes, resources), the
rung rule, the sampler, the session plan, the budgets' verdict, the seeds, or the architectures
the space draws. A key that changes none of them is either documented as recorded only
(`RECORDED_ONLY`) or a bug: `early_stopping.brackets` once was such a key.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from dimsearch import zoo
from dimsearch.data.config import FIELD_RULES as DATA_RULES
from dimsearch.search import space_from_dict
from dimsearch.search._params import PARAMS
from dimsearch.search.bridge import OpenTrial
from dimsearch.search.budgets import BUDGET_RULES
from dimsearch.search.gate import gate_plan
from dimsearch.search.loader import TOP_KEYS
from dimsearch.search.runner import _payload_builder, _scheduler, session_plan
from dimsearch.search.scheduler import make_rule
from dimsearch.search.settings import (
    EARLY_STOPPING_RULES,
    KIND_KEYS,
    LATENCY_RULES,
    RESOURCE_RULES,
    SAMPLER_RULES,
    SEARCH_RULES,
)
from dimsearch.train.config import FIELD_RULES as TRAIN_RULES

PIT = Path(__file__).resolve().parents[1] / "spaces" / "pit.yaml"

# Keys kept in the study for people, not read by anything that runs (docs/spaces.md says so).
RECORDED_ONLY = {"description"}

# section -> key -> a valid value other than spaces/pit.yaml's (or the default)
CHANGES: dict[str, dict[str, Any]] = {
    "": {
        "name": "pit2",
        "description": "another text",
        "target_img_size": 192,
        "num_classes": 100,
        "objectives": ["accuracy", "params_m"],
        "seeds": ["pit_ti"],
    },
    "arch": {
        "stages": {"low": 3, "high": 4},
        "stem": "conv7",
        "patch_size": 14,
        "heads": {"choices": [2, 4]},
        "head_dim": {"choices": [32]},
        "head_mult": {"choices": [2]},
        "depth": [{"low": 1, "high": 2}, {"low": 2, "high": 3}, {"low": 1, "high": 2}, 1],
        "sr": {"choices": [1, 2]},
        "mlp_ratio": 3,
        "sr_kind": "avg",
        "head_mix": True,
        "qkv_bias": False,
        "pool": "avg",
        "pos": "gl",
        "pos_at": "stages",
        "head": "avg",
        "distilled": True,
        "norm_eps": 1.0e-5,
        "drop_path": 0.1,
    },
    "budgets": {"max_gflops": 2.0, "max_params_m": 20, "max_latency_ms": 50},
    "latency": {
        "device": "cuda",
        "batch_size": 8,
        "repeats": 20,
        "warmup": 5,
        "precision": "bf16",
        "mode": "throughput",
        "threads": 2,
        "clock": "cpu",
        "predict": False,
    },
    "data": {
        "kind": "idx",
        "img_size": 48,
        "num_classes": 5,
        "train_per_class": 100,
        "val_per_class": 20,
        "root": "/data/fmnist",
        "cache_dir": "/tmp/cache",
        "seed": 7,
        "on_corrupt": "error",
        "workers": 3,
    },
    "train": {
        "epochs": 6,
        "batch_size": 32,
        "lr": 2.0e-3,
        "weight_decay": 0.01,
        "warmup_epochs": 0,
        "min_lr": 2.0e-5,
        "label_smoothing": 0.2,
        "mixup": 0.8,
        "cutmix": 1.0,
        "drop_path": 0.1,
        "clip_grad": 5.0,
        "augment": "none",
        "amp": "bf16",
        "compile": True,
        "channels_last": True,
        "seed": 3,
        "num_threads": 2,
    },
    "early_stopping": {
        "kind": "asha",
        "grace_period": 2,
        "reduction_factor": 3,
        "brackets": 2,
        "protect_seeds": False,
    },
    "sampler": {
        "kind": "nsga2",
        "seed": 5,
        "n_startup_trials": 2,
        "constant_liar": False,
        "multivariate": False,
        "population_size": 10,
        "crossover_prob": 0.5,
        "mutation_prob": 0.2,
    },
    "search": {"trials": 30, "max_concurrent": 4, "timeout_min": 60, "repeats": 3},
    "resources": {"cpus": 2, "gpus": 0.5},
}

SECTION_RULES = {
    "budgets": BUDGET_RULES,
    "latency": LATENCY_RULES,
    "data": DATA_RULES,
    "train": TRAIN_RULES,
    "early_stopping": EARLY_STOPPING_RULES,
    "sampler": SAMPLER_RULES,
    "search": SEARCH_RULES,
    "resources": RESOURCE_RULES,
    "arch": PARAMS,
}
SECTIONS = {"arch", *SECTION_RULES}


def _accepted() -> list[tuple[str, str]]:
    keys = [("", k) for k in TOP_KEYS if k not in SECTIONS]
    for section, rules in SECTION_RULES.items():
        keys += [(section, k) for k in rules]
    return keys


# A key that only matters given another setting is walked with that setting in both spaces
# (the key reduction kind means something only where keys and values are reduced).
CONTEXT: dict[tuple[str, str], dict[str, Any]] = {
    ("arch", "sr_kind"): {"sr": 2},
    ("arch", "head_mix"): {"sr": 2},
    ("latency", "clock"): {"threads": 1},  # the CPU clock times one thread
}


def _base(section: str = "", key: str = "") -> dict[str, Any]:
    data = yaml.safe_load(PIT.read_text())
    if section == "arch":
        data["seeds"] = []  # a changed arch need not hold the PiT seeds
    if (section, key) in CONTEXT:
        data[section].update(CONTEXT[section, key])
    return data


def _changed(section: str, key: str) -> dict[str, Any]:
    data = _base(section, key)
    value = copy.deepcopy(CHANGES[section][key])
    if section == "":
        data[key] = value
        return data
    target = data.setdefault(section, {})
    target[key] = value
    # keys that only apply to another kind: switch the kind with them
    if section in ("sampler", "early_stopping"):
        kind = target["kind"]
        if key != "kind":
            kind = next(k for k, keys in KIND_KEYS[section].items() if key in keys)
        target["kind"] = kind
        for other in list(target):
            if other not in ("kind", key) and other not in KIND_KEYS[section][kind]:
                del target[other]
    if section == "data" and key == "kind":
        target["root"] = "/data/fmnist"
    if section == "train" and key in ("mixup", "cutmix"):
        target["batch_size"] = 64  # mixing needs an even batch
    return data


def _draws(space: Any, n: int = 12) -> list[dict[str, Any]]:
    study = optuna.create_study(
        directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    out = []
    for _ in range(n):
        trial = study.ask()
        try:
            out.append(space.sample(trial).to_dict())
        except Exception as err:  # an invalid draw is an outcome too
            out.append({"error": str(err)})
    return out


def _describe(obj: Any, depth: int = 0) -> Any:
    """An object's state as nested tuples of plain values, for comparison: the sampler's
    settings down to its random state's seed. (Its pickle was compared before; in a long test
    session an Optuna sampler came to hold a lock, which does not pickle.)"""
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    if depth > 8:
        return type(obj).__name__
    if isinstance(obj, (list, tuple)):
        return tuple(_describe(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return tuple(sorted((str(k), _describe(v, depth + 1)) for k, v in obj.items()))
    if hasattr(obj, "__dict__"):
        return (type(obj).__name__, _describe(vars(obj), depth + 1))
    try:  # a numpy RandomState: its state
        return pickle.dumps(obj)
    except (TypeError, pickle.PicklingError):  # a lock
        return type(obj).__name__


def _what_runs(space: Any) -> dict[str, Any]:
    """Everything a search takes from the space, in comparable form."""
    pit_s = zoo.get("pit_s")
    rule = make_rule(space)
    scheduler = _scheduler(space, {"t": OpenTrial(None, "pit_ti", 1.0, 1)}, lambda *a: None)
    return {
        "name": space.name,
        "payload": _payload_builder(space)(pit_s.to_dict(), space.train.seed),
        "directions": space.directions,
        "seeds": space.seeds,
        "rule": None
        if rule is None
        else (
            rule.objectives,
            rule.grace_period,
            rule.reduction_factor,
            rule.max_t,
            [rule.milestones(b) for b in range(rule.brackets)],
        ),
        "protected": None if rule is None else scheduler.costs_of("t")[1],
        "sampler": _describe(space.make_sampler()),
        "plan": session_plan(space),
        "latency_gate": gate_plan(space),
        "budgets": space.check_budgets(pit_s),
        "draws": _draws(space),
    }


def test_the_walk_covers_every_accepted_key() -> None:
    table = {(s, k) for s, keys in CHANGES.items() for k in keys}
    assert table == set(_accepted())


@pytest.mark.parametrize(("section", "key"), _accepted(), ids=lambda v: v or "top")
def test_every_accepted_key_changes_what_runs(section: str, key: str) -> None:
    base = _what_runs(space_from_dict(_base(section, key), "pit.yaml"))
    changed = space_from_dict(_changed(section, key), f"pit.yaml ({section}.{key})")
    differs = [part for part, value in _what_runs(changed).items() if value != base[part]]
    if key in RECORDED_ONLY:
        assert differs == [], f"{key} is documented as recorded only, yet changes {differs}"
    else:
        assert differs, f"{section}.{key} is accepted and changes nothing that runs"
