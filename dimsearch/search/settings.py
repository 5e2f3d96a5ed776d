"""The settings sections of a space file: latency, early stopping, sampler, search, resources.

``latency:`` is `dimsearch.cost.LatencySettings` (re-exported here), with the space's rule on
``device`` (`LATENCY_RULES`).

Each section is a frozen dataclass (its defaults are the file's defaults) with a table of
`dimsearch._rules.Rule`s, one per key, that the loader checks a section against and that the
JSON Schema (`dimsearch.search.schema`) is made from. ``budgets:`` has its own module
(`dimsearch.search.budgets`): export's ``--max-*`` limits are the same type. ``data:`` and
``train:`` belong to `dimsearch.data` and `dimsearch.train`.

Sections with a ``kind`` (sampler, early stopping) take only the keys their kind uses
(`KIND_KEYS`): a ``population_size`` under ``kind: tpe`` would be silently ignored, so it is
an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dimsearch._rules import Rule, Where
from dimsearch.cost._latency import LATENCY_RULES as COST_LATENCY_RULES
from dimsearch.cost._latency import LatencySettings

if TYPE_CHECKING:
    import optuna

__all__ = [
    "EARLY_STOPPING",
    "EARLY_STOPPING_RULES",
    "KIND_KEYS",
    "LATENCY_DEVICES",
    "LATENCY_RULES",
    "OBJECTIVES",
    "RESOURCE_RULES",
    "SAMPLERS",
    "SAMPLER_RULES",
    "SEARCH_RULES",
    "EarlyStopping",
    "LatencySettings",
    "Resources",
    "SamplerSettings",
    "SearchSettings",
    "check_kind_keys",
]

# Objective name -> Optuna direction. Fixed by name, so a space cannot ask to maximise FLOPs.
OBJECTIVES = {
    "accuracy": "maximize",
    "gflops": "minimize",
    "params_m": "minimize",
    "latency_ms": "minimize",
}
SAMPLERS = ("tpe", "nsga2", "random")
EARLY_STOPPING = ("moasha", "asha", "none")
LATENCY_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EarlyStopping:
    """Successive halving of the proxy trainings (`dimsearch.search.moasha.RungRule`).

    ``moasha`` (the default) ranks the trials at a rung on every objective of the space, so a
    cheap sample on the accuracy/GFLOPs front is not stopped for its accuracy alone; ``asha``
    ranks on accuracy only; ``none`` trains every trial the full budget. ``brackets`` > 1 runs
    Hyperband-style brackets whose first rung is ``grace_period * reduction_factor**s``.
    ``protect_seeds`` trains the zoo seeds the full budget whatever their rank, so every front
    carries its references. ``max_t`` is ``train.epochs`` (not a key of the file).
    """

    kind: str = "moasha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    brackets: int = 1
    protect_seeds: bool = True
    max_t: int = 1


@dataclass(frozen=True)
class SamplerSettings:
    """Which Optuna sampler proposes architectures; fields a kind does not use are ignored."""

    kind: str = "tpe"
    seed: int | None = 0
    n_startup_trials: int = 10
    constant_liar: bool = True
    multivariate: bool = True
    population_size: int = 50
    crossover_prob: float = 0.9
    mutation_prob: float | None = None

    def make(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """A fresh Optuna sampler of this kind (see `SearchSpace.make_sampler`)."""
        import optuna

        seed = None if self.seed is None else self.seed + seed_offset
        if self.kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.kind == "nsga2":
            return optuna.samplers.NSGAIISampler(
                population_size=self.population_size,
                crossover_prob=self.crossover_prob,
                mutation_prob=self.mutation_prob,
                seed=seed,
            )
        with warnings.catch_warnings():  # `group` is flagged experimental; it is what we want
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                n_startup_trials=self.n_startup_trials,
                seed=seed,
                multivariate=self.multivariate,
                group=self.multivariate,
                constant_liar=self.constant_liar,
            )


@dataclass(frozen=True)
class SearchSettings:
    """How much one ``dimsearch run`` does: sampled trials trained, parallelism, wall limit.

    ``repeats`` K > 1: once the sampled trials are spent, the final front and the seeds are
    trained again with K - 1 further training seeds, so their accuracy is a mean with a
    spread and neighbours within noise of each other can be told apart from real steps.
    """

    trials: int = 12
    max_concurrent: int = 1
    timeout_min: float | None = None
    repeats: int = 1


@dataclass(frozen=True)
class Resources:
    """Ray resources of one trial; ``gpus`` may be a fraction below 1 (trials share a GPU, and
    each trial is held to that fraction of the GPU's memory)."""

    cpus: float = 1.0
    gpus: float = 0.0


# -- the rules of each section's keys --------------------------------------------------------------

# Upper bounds sit far above any sensible setting: they catch a slip of the keyboard (a
# `trials: 1000000000` that would otherwise queue forever), never a real choice.
_PROB = Rule("number", low=0, high=1)
_BOOL = Rule("bool")
_MANY = 1_000_000  # trials, start-up trials: more than any study will hold
_THREADS = 1024  # CPUs, threads, parallel trials: more than any node has

# A space's ``latency:`` section is a `LatencySettings` (its one home is `dimsearch.cost`, which
# a search uses and which never uses the search), checked by the same rules, except that a study
# names a device *kind*: which GPU a trial measures on is the GPU Ray gave it.
LATENCY_RULES = {**COST_LATENCY_RULES, "device": Rule("choice", choices=LATENCY_DEVICES)}
EARLY_STOPPING_RULES = {
    "kind": Rule("choice", choices=EARLY_STOPPING),
    "grace_period": Rule("int", low=1, high=1000),  # train.epochs' bound
    "reduction_factor": Rule("number", low=1, high=100, low_open=True),
    "brackets": Rule("int", low=1, high=16),
    "protect_seeds": _BOOL,
}
SAMPLER_RULES = {
    "kind": Rule("choice", choices=SAMPLERS),
    # numpy seeds stop at 2**32 - 1, and a resumed study adds its trial count to the seed
    "seed": Rule("int", low=0, high=2**31 - 1, optional=True),
    "n_startup_trials": Rule("int", low=0, high=_MANY),
    "constant_liar": _BOOL,
    "multivariate": _BOOL,
    "population_size": Rule("int", low=2, high=100_000),
    "crossover_prob": _PROB,
    "mutation_prob": Rule("number", low=0, high=1, optional=True),
}
SEARCH_RULES = {
    "trials": Rule("int", low=0, high=_MANY),
    "max_concurrent": Rule("int", low=1, high=_THREADS),
    "timeout_min": Rule("number", low=0, high=525_600, low_open=True, optional=True),  # a year
    "repeats": Rule("int", low=1, high=10),
}
RESOURCE_RULES = {
    "cpus": Rule("number", low=0, high=_THREADS, low_open=True),
    # Ray shares a GPU only in fractions below 1; above that it hands out whole devices
    "gpus": Rule(
        "number",
        low=0,
        high=64,
        text="a number in [0, 64] (a fraction only below 1, e.g. 0.25)",
        test=lambda v: v <= 1 or float(v).is_integer(),
        schema_extra={"anyOf": [{"maximum": 1}, {"multipleOf": 1}]},
    ),
}

# The keys each kind uses (besides `kind`); the others are errors, not silently ignored.
KIND_KEYS: dict[str, Mapping[str, Sequence[str]]] = {
    "sampler": {
        "tpe": ("seed", "n_startup_trials", "constant_liar", "multivariate"),
        "nsga2": ("seed", "population_size", "crossover_prob", "mutation_prob"),
        "random": ("seed",),
    },
    "early_stopping": {
        "moasha": ("grace_period", "reduction_factor", "brackets", "protect_seeds"),
        "asha": ("grace_period", "reduction_factor", "brackets", "protect_seeds"),
        "none": (),
    },
}


def check_kind_keys(raw: Any, kind: str, where: Where, keys: Mapping[str, Sequence[str]]) -> None:
    """Reject keys that the chosen ``kind`` does not use (they would be silently ignored)."""
    for key in raw or {}:
        if key != "kind" and key not in keys[kind]:
            raise (where / key).error(
                f"does not apply to kind {kind!r}; {kind} takes {list(keys[kind]) or 'no keys'}"
            )
