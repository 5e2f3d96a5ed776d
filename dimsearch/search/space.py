"""`SearchSpace`: a space file, validated, that samples `ArchConfig`s and says how to judge them.

A space file (``spaces/pit.yaml``) holds everything a search needs: the architecture
parameters (constants or Optuna distributions, vocabulary in `dimsearch.search._params`), the
objectives and budgets, the zoo models to start from, the proxy data and training, early
stopping, the sampler and the Ray resources. `load_space` checks all of it before anything else
happens, so a typo costs a second, not a half-finished study; every error is a `SpaceError`
naming the file and the key path (``spaces/pit.yaml: arch.depth.low must be ...``).

The space is the only place that knows how Optuna parameters become an architecture:

    params (stages, s1.depth, pool, ...) --sample--> ArchConfig --params_of--> params

`sample` is define-by-run, so a parameter exists only where it means something (``s4.depth``
only for four-stage samples, ``patch_size`` only for the patch stem), and irrelevant fields get
one canonical value, so two trials never train the same network under different names.

Importing this module imports neither torch nor Optuna; loading a space imports the
training settings (`dimsearch.train`), sampling imports Optuna.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dimsearch._values import is_int, is_number
from dimsearch.config import ArchConfig, HeadConfig, StageConfig, StemConfig, TransitionConfig
from dimsearch.errors import ArchError, DataError, SpaceError, TrainingError
from dimsearch.search._params import (
    PARAMS,
    REQUIRED,
    Spec,
    Where,
    as_number,
    parse_decl,
)

if TYPE_CHECKING:
    import optuna

    from dimsearch.data import DataConfig
    from dimsearch.train import TrainConfig

__all__ = [
    "EARLY_STOPPING",
    "LATENCY_DEVICES",
    "SAMPLERS",
    "Budgets",
    "EarlyStopping",
    "LatencySettings",
    "Resources",
    "SamplerSettings",
    "SearchSettings",
    "SearchSpace",
    "load_space",
]

SAMPLERS = ("tpe", "nsga2", "random")
EARLY_STOPPING = ("asha", "none")
LATENCY_DEVICES = ("cpu", "cuda")

# The study name becomes a file name (studies/<name>.db) and a dashboard label.
_NAME_RE = re.compile(r"^[a-z0-9_-]+$")

# What a stage gets for a field the space leaves unused (sr_kind where sr == 1): the config's
# own default, so the same network always has the same config.
_STAGE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StageConfig)}


# -- settings sections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Budgets:
    """Upper limits at ``target_img_size``; ``None`` means no limit.

    Params and GFLOPs are checked analytically before a sample is built (`check_budgets`),
    latency after it is measured (`check_latency`).
    """

    max_gflops: float | None = None
    max_params_m: float | None = None
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured (`dimsearch.cost.measure_latency`); one device kind per study."""

    device: str = "cpu"
    batch_size: int = 1
    repeats: int = 10
    warmup: int = 3


@dataclass(frozen=True)
class EarlyStopping:
    """Ray Tune early stopping; ``max_t`` is ``train.epochs`` (not a key of the file)."""

    kind: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    brackets: int = 1
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


@dataclass(frozen=True)
class SearchSettings:
    """How much one ``dimsearch run`` does: sampled trials trained, parallelism, wall limit."""

    trials: int = 12
    max_concurrent: int = 1
    timeout_min: float | None = None


@dataclass(frozen=True)
class Resources:
    """Ray resources of one trial; ``gpus`` may be a fraction below 1 (trials share a GPU, and
    each trial is held to that fraction of the GPU's memory)."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class _Rule:
    default: Any
    test: Callable[[Any], bool]
    expected: str
    number: bool = False  # accept "1e-3" (PyYAML reads exponents without a dot as strings)


def _int_rule(default: Any, minimum: int) -> _Rule:
    return _Rule(default, lambda v: is_int(v) and v >= minimum, f"an integer >= {minimum}")


def _choice_rule(default: str, names: Sequence[str]) -> _Rule:
    return _Rule(default, lambda v: isinstance(v, str) and v in names, f"one of {list(names)}")


def _optional(rule: _Rule) -> _Rule:
    return _Rule(
        rule.default, lambda v: v is None or rule.test(v), f"null or {rule.expected}", rule.number
    )


_POSITIVE = _Rule(None, lambda v: is_number(v) and v > 0, "a number > 0", number=True)
_PROB = _Rule(None, lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]", number=True)
_BOOL = _Rule(True, lambda v: isinstance(v, bool), "true or false")

_BUDGET_RULES = {
    key: _optional(_POSITIVE) for key in ("max_gflops", "max_params_m", "max_latency_ms")
}
_LATENCY_RULES = {
    "device": _choice_rule("cpu", LATENCY_DEVICES),
    "batch_size": _int_rule(1, 1),
    "repeats": _int_rule(10, 1),
    "warmup": _int_rule(3, 0),
}
_EARLY_RULES = {
    "kind": _choice_rule("asha", EARLY_STOPPING),
    "grace_period": _int_rule(1, 1),
    "reduction_factor": _Rule(2.0, lambda v: is_number(v) and v > 1, "a number > 1", True),
    "brackets": _int_rule(1, 1),
}
_EARLY_KEYS = {"asha": ("grace_period", "reduction_factor", "brackets"), "none": ()}
_SAMPLER_RULES = {
    "kind": _choice_rule("tpe", SAMPLERS),
    "seed": _optional(_int_rule(0, 0)),
    "n_startup_trials": _int_rule(10, 0),
    "constant_liar": _BOOL,
    "multivariate": _BOOL,
    "population_size": _int_rule(50, 2),
    "crossover_prob": dataclasses.replace(_PROB, default=0.9),
    "mutation_prob": _optional(_PROB),
}
_SAMPLER_KEYS = {
    "tpe": ("seed", "n_startup_trials", "constant_liar", "multivariate"),
    "nsga2": ("seed", "population_size", "crossover_prob", "mutation_prob"),
    "random": ("seed",),
}
_SEARCH_RULES = {
    "trials": _int_rule(12, 0),
    "max_concurrent": _int_rule(1, 1),
    "timeout_min": _optional(_POSITIVE),
}
_RESOURCE_RULES = {
    "cpus": _Rule(1.0, lambda v: is_number(v) and v > 0, "a number > 0", True),
    # Ray shares a GPU only in fractions below 1; above that it hands out whole devices
    "gpus": _Rule(
        0.0,
        lambda v: is_number(v) and (0 <= v <= 1 or float(v).is_integer()),
        "a number >= 0 (a fraction only below 1, e.g. 0.25)",
        True,
    ),
}

_TOP_KEYS = (
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


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _section(raw: Any, where: Where, rules: Mapping[str, _Rule]) -> dict[str, Any]:
    """A settings mapping checked key by key against ``rules``; omitted keys get defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise where.error(f"must be a mapping with keys {list(rules)}, got {_kind(raw)}")
    out = {key: rule.default for key, rule in rules.items()}
    for key, value in raw.items():
        if key not in rules:
            raise (where / str(key)).error(f"is not a known key; known keys are {list(rules)}")
        rule = rules[key]
        value = as_number(value) if rule.number else value
        if not rule.test(value):
            raise (where / key).error(f"must be {rule.expected}, got {value!r}")
        out[key] = float(value) if rule.number and value is not None else value
    return out


def _kind_keys(
    raw: Any, values: Mapping[str, Any], where: Where, keys: Mapping[str, Sequence[str]]
) -> None:
    """Reject keys that the chosen ``kind`` does not use (they would be silently ignored)."""
    kind = values["kind"]
    for key in raw or {}:
        if key != "kind" and key not in keys[kind]:
            raise (where / key).error(
                f"does not apply to kind {kind!r}; {kind} takes {list(keys[kind]) or 'no keys'}"
            )


# -- the space -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build it with `load_space` (or `from_dict`).

    Attributes:
        name: study name (``[a-z0-9_-]+``; default the file stem).
        path: the file it was loaded from (not part of equality).
        description: free text.
        target_img_size: resolution the costs (params, GFLOPs, latency) and budgets refer to.
        num_classes: classifier width of the deployed model, for those costs.
        params: every parameter declaration by Optuna name (``stages``, ``s2.depth``, ...),
            constants included; per-stage keys have one entry per possible stage.
        max_stages: the largest stage count the space can sample.
        objectives: objective names, in study order (``accuracy`` always present).
        budgets, seeds, latency, data, train, early_stopping, sampler, search, resources:
            the file's sections, parsed (``data``/``train`` are `DataConfig`/`TrainConfig`).
    """

    name: str
    description: str
    target_img_size: int
    num_classes: int
    params: Mapping[str, Spec] = field(hash=False)
    max_stages: int
    objectives: tuple[str, ...]
    budgets: Budgets
    seeds: tuple[str, ...]
    latency: LatencySettings
    data: DataConfig
    train: TrainConfig
    early_stopping: EarlyStopping
    sampler: SamplerSettings
    search: SearchSettings
    resources: Resources
    path: Path | None = field(default=None, compare=False)

    @property
    def directions(self) -> list[str]:
        """Optuna directions of `objectives`, in the same order."""
        from dimsearch.search.study import OBJECTIVES  # here: importing a space stays Optuna-free

        return [OBJECTIVES[name] for name in self.objectives]

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, trial: optuna.Trial | optuna.trial.FixedTrial) -> ArchConfig:
        """The architecture for ``trial``, asking only for parameters that apply (define-by-run).

        Derived: width_i = heads_i * head_dim; heads_i = heads_(i-1) * s{i}.head_mult; the
        patch stem's stride is patch_size // 2; every transition is ``pool`` with stride 2;
        ``pos`` goes on stage 1 (``pos_at: stem``) or every stage; head interaction is on
        where ``head_mix`` and the stage has more than one head. Fields a sample leaves unused
        get one canonical value (sr_kind ``dwconv`` where sr is 1, the default patch geometry
        for conv stems), so one network is one config.

        Raises:
            ArchError: the parameters make no valid network, or one whose token grid
                collapses at ``target_img_size`` or at the proxy resolution; the message lists
                the parameters, and a search records the trial as pruned with it.
        """
        used: dict[str, Any] = {}

        def ask(key: str, stage: int | None = None) -> Any:
            name = PARAMS[key].name(stage)
            spec = self.params[name]
            value = spec.suggest(trial, name)
            if not spec.fixed:
                used[name] = value
            return value

        n = ask("stages")
        kind = ask("stem")
        if kind == "patch":
            size = ask("patch_size")
            stem = StemConfig("patch", patch_size=size, stride=size // 2)
        else:
            stem = StemConfig(kind)
        heads, depths, srs, mlps = [ask("heads")], [], [], []
        head_dim = ask("head_dim")
        for i in range(1, n + 1):
            if i > 1:
                heads.append(heads[-1] * ask("head_mult", i))
            depths.append(ask("depth", i))
            srs.append(ask("sr", i))
            mlps.append(float(ask("mlp_ratio", i)))
        sr_kind = ask("sr_kind") if any(r > 1 for r in srs) else _STAGE_DEFAULTS["sr_kind"]
        head_mix = ask("head_mix") if any(h > 1 for h in heads) else False
        qkv_bias = ask("qkv_bias")
        pool = ask("pool") if n > 1 else None
        pos = ask("pos")
        pos_at = ask("pos_at") if pos != "none" and n > 1 else "stem"
        head = ask("head")
        distilled = ask("distilled") if head == "token" else False
        norm_eps = float(ask("norm_eps"))
        drop_path = float(ask("drop_path"))
        try:
            stages = tuple(
                StageConfig(
                    depth=depths[i],
                    dim=heads[i] * head_dim,
                    heads=heads[i],
                    mlp_ratio=mlps[i],
                    qkv_bias=qkv_bias,
                    sr_ratio=srs[i],
                    sr_kind=sr_kind if srs[i] > 1 else _STAGE_DEFAULTS["sr_kind"],
                    head_interaction=head_mix and heads[i] > 1,
                    pos=pos if i == 0 or pos_at == "stages" else "none",
                )
                for i in range(n)
            )
            cfg = ArchConfig(
                stages=stages,
                stem=stem,
                transitions=(TransitionConfig(pool, stride=2),) * (n - 1) if pool else (),
                head=HeadConfig(head, distilled=distilled),
                norm_eps=norm_eps,
                drop_path_rate=drop_path,
            )
            cfg.grids(self.target_img_size)
            _check_trainable(cfg, self.data.img_size)
        except ArchError as err:
            listed = ", ".join(f"{k}={v!r}" for k, v in used.items())
            raise ArchError(f"{err} (params: {listed})") from None
        return cfg

    def params_of(self, cfg: ArchConfig) -> dict[str, Any]:
        """The Optuna parameters that make `sample` return exactly ``cfg`` (its name aside).

        Used to enqueue the seeds: ``study.enqueue_trial(space.params_of(zoo.get("pit_s")))``.
        Constants are not parameters and are not in the result.

        Raises:
            SpaceError: the space cannot express ``cfg``; the message names the parameter and
                value (``s1.depth=2 is not in arch.depth[0] ...``) or the structural rule
                (e.g. head dims that differ between stages).
        """
        label = f"model {cfg.name!r}" if cfg.name else "the config"
        try:
            params = self._params_of(cfg)
        except _Inexpressible as err:
            raise SpaceError(f"{label} is outside the space: {err}") from None
        from optuna.trial import FixedTrial

        try:
            got = self.sample(FixedTrial(params))
        except ArchError as err:
            raise SpaceError(f"{label} is outside the space: {err}") from None
        want = cfg.replace(name="")
        if got != want:
            diff = _first_difference(want.to_dict(), got.to_dict())
            raise SpaceError(f"{label} is outside the space: {diff}")
        return params

    def _params_of(self, cfg: ArchConfig) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def put(key: str, value: Any, stage: int | None = None) -> None:
            param = PARAMS[key]
            name = param.name(stage)
            spec = self.params[name]  # exists: the stage count was checked first
            ok, exact = spec.find(value)
            if not ok:
                decl = f"arch.{key}"
                if param.per_stage and self._is_listed(key):
                    decl += f"[{stage - param.first_stage}]"
                raise _Inexpressible(
                    f"{name}={value!r} is not in {decl}, which allows {spec.describe()}"
                )
            if not spec.fixed:
                out[name] = exact

        stages = cfg.stages
        n = len(stages)
        put("stages", n)
        put("stem", cfg.stem.kind)
        if cfg.stem.kind == "patch":
            size = cfg.stem.patch_size
            put("patch_size", size)
            if (cfg.stem.stride, cfg.stem.padding) != (size // 2, 0):
                raise _Inexpressible(
                    f"its patch stem has stride={cfg.stem.stride}, padding={cfg.stem.padding}; "
                    f"the space derives stride = patch_size // 2 = {size // 2} and padding 0"
                )
        head_dim = stages[0].head_dim
        for i, s in enumerate(stages, 1):
            if s.head_dim != head_dim:
                raise _Inexpressible(
                    f"stage {i} has head dim {s.head_dim} (dim {s.dim} / {s.heads} heads) but "
                    f"stage 1 has {head_dim}; the space keeps head_dim the same in every stage"
                )
        put("heads", stages[0].heads)
        put("head_dim", head_dim)
        for i, s in enumerate(stages, 1):
            if i > 1:
                prev = stages[i - 2].heads
                if s.heads % prev:
                    raise _Inexpressible(
                        f"stage {i} has {s.heads} heads after {prev}; the space multiplies "
                        f"heads by an integer s{i}.head_mult"
                    )
                put("head_mult", s.heads // prev, i)
            put("depth", s.depth, i)
            put("sr", s.sr_ratio, i)
            put("mlp_ratio", s.mlp_ratio, i)
        sr_kinds = {s.sr_kind for s in stages if s.sr_ratio > 1}
        if len(sr_kinds) > 1:
            raise _Inexpressible(
                f"its stages reduce keys/values with different kinds "
                f"{sorted(sr_kinds)}; the space has one sr_kind"
            )
        if sr_kinds:
            put("sr_kind", sr_kinds.pop())
        mixes = {s.head_interaction for s in stages if s.heads > 1}
        if len(mixes) > 1:
            raise _Inexpressible(
                "head interaction is on in some multi-head stages and off in "
                "others; the space's head_mix applies to all of them"
            )
        if mixes:
            put("head_mix", mixes.pop())
        biases = {s.qkv_bias for s in stages}
        if len(biases) > 1:
            raise _Inexpressible("qkv_bias differs between stages; the space has one qkv_bias")
        put("qkv_bias", biases.pop())
        if n > 1:
            kinds = {(t.kind, t.stride) for t in cfg.transitions}
            if len(kinds) > 1 or next(iter(kinds))[1] != 2:
                raise _Inexpressible(
                    f"its transitions are {[(t.kind, t.stride) for t in cfg.transitions]}; the "
                    "space uses one kind (`pool`) with stride 2 for all of them"
                )
            put("pool", cfg.transitions[0].kind)
        self._put_pos(put, [s.pos for s in stages])
        put("head", cfg.head.pool)
        if cfg.head.pool == "token":
            put("distilled", cfg.head.distilled)
        put("norm_eps", cfg.norm_eps)
        put("drop_path", cfg.drop_path_rate)
        if cfg.in_chans != 3:
            raise _Inexpressible(f"it has in_chans={cfg.in_chans}; spaces sample RGB models")
        return out

    @staticmethod
    def _put_pos(put: Callable[..., None], pos: list[str]) -> None:
        first, rest = pos[0], pos[1:]
        if all(p == "none" for p in rest):
            put("pos", first)
            if first != "none" and rest:
                put("pos_at", "stem")
        elif all(p == first for p in rest):
            put("pos", first)
            put("pos_at", "stages")
        else:
            raise _Inexpressible(
                f"its stages' positional encodings are {pos}; the space puts `pos` on stage 1 "
                "only (pos_at: stem) or on every stage (pos_at: stages)"
            )

    def _is_listed(self, key: str) -> bool:
        """Whether a per-stage key was declared as a list (so errors can index it)."""
        param = PARAMS[key]
        specs = [self.params[param.name(i)] for i in range(param.first_stage, self.max_stages + 1)]
        return any(s != specs[0] for s in specs)

    # -- budgets -------------------------------------------------------------------------------

    def check_budgets(self, cfg: ArchConfig) -> str | None:
        """Why ``cfg`` is over the params/GFLOPs budgets at ``target_img_size``, or None.

        Analytic (`dimsearch.cost.estimate`): nothing is built, so a search can drop an
        over-budget sample in microseconds. Latency is checked after measuring
        (`check_latency`).
        """
        over = self._over_budget(cfg)
        if not over:
            return None
        return f"{'; '.join(over)} (at {self.target_img_size} px, {self.num_classes} classes)"

    def _over_budget(self, cfg: ArchConfig) -> list[str]:
        from dimsearch.cost import estimate

        est = estimate(cfg, self.target_img_size, self.num_classes)
        b = self.budgets
        over = []
        if b.max_gflops is not None and est.gflops > b.max_gflops:
            over.append(f"{est.gflops:.3f} GFLOPs > max_gflops {b.max_gflops:g}")
        if b.max_params_m is not None and est.mparams > b.max_params_m:
            over.append(f"{est.mparams:.2f} M params > max_params_m {b.max_params_m:g}")
        return over

    def check_latency(self, latency_ms: float) -> str | None:
        """Why a measured latency is over ``budgets.max_latency_ms``, or None."""
        limit = self.budgets.max_latency_ms
        if limit is None or latency_ms <= limit:
            return None
        return (
            f"{latency_ms:.2f} ms > max_latency_ms {limit:g} "
            f"({self.latency.device}, batch {self.latency.batch_size})"
        )

    # -- sampler -------------------------------------------------------------------------------

    def make_sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """A fresh Optuna sampler as the ``sampler:`` section says.

        Args:
            seed_offset: added to the seed, e.g. the study's trial count when resuming, so a
                second ``dimsearch run`` does not replay the first run's random start-up
                samples (enqueue-free duplicates waste whole trainings).

        The TPE sampler is multivariate with ``group=True``: the space is conditional
        (``s4.depth`` exists only for four stages), and grouping models the parameters that
        occur together jointly instead of falling back to independent sampling for them.
        """
        import optuna

        s = self.sampler
        seed = None if s.seed is None else s.seed + seed_offset
        if s.kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.kind == "nsga2":
            return optuna.samplers.NSGAIISampler(
                population_size=s.population_size,
                crossover_prob=s.crossover_prob,
                mutation_prob=s.mutation_prob,
                seed=seed,
            )
        with warnings.catch_warnings():  # `group` is flagged experimental; it is what we want
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                n_startup_trials=s.n_startup_trials,
                seed=seed,
                multivariate=s.multivariate,
                group=s.multivariate,
                constant_liar=s.constant_liar,
            )

    # -- serialisation -------------------------------------------------------------------------

    def arch_dict(self) -> dict[str, Any]:
        """The ``arch:`` section as written in a file (every key, defaults filled in)."""
        out: dict[str, Any] = {}
        for key, param in PARAMS.items():
            if not param.per_stage:
                out[key] = self.params[key].to_yaml()
                continue
            specs = [
                self.params[param.name(i)] for i in range(param.first_stage, self.max_stages + 1)
            ]
            if specs:
                listed = any(s != specs[0] for s in specs)
                out[key] = [s.to_yaml() for s in specs] if listed else specs[0].to_yaml()
        return out

    def to_dict(self) -> dict[str, Any]:
        """The whole space as plain data (JSON-ready), defaults filled in.

        ``SearchSpace.from_dict(space.to_dict()) == space``; a study stores it in its user
        attrs so what was searched is known without the file.
        """
        sampler = {"kind": self.sampler.kind}
        sampler.update({k: getattr(self.sampler, k) for k in _SAMPLER_KEYS[self.sampler.kind]})
        early = {"kind": self.early_stopping.kind}
        early.update(
            {k: getattr(self.early_stopping, k) for k in _EARLY_KEYS[self.early_stopping.kind]}
        )
        return {
            "name": self.name,
            "description": self.description,
            "target_img_size": self.target_img_size,
            "num_classes": self.num_classes,
            "arch": self.arch_dict(),
            "objectives": list(self.objectives),
            "budgets": dataclasses.asdict(self.budgets),
            "seeds": list(self.seeds),
            "latency": dataclasses.asdict(self.latency),
            "data": self.data.to_dict(),
            "train": self.train.to_dict(),
            "early_stopping": early,
            "sampler": sampler,
            "search": dataclasses.asdict(self.search),
            "resources": dataclasses.asdict(self.resources),
        }

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "<space>", path: str | Path | None = None
    ) -> SearchSpace:
        """Validate a space mapping (a parsed YAML file, or `to_dict` output).

        Args:
            data: the mapping.
            source: how errors name it (the file name for `load_space`).
            path: the file, if any; its stem is the default ``name``.

        Raises:
            SpaceError: anything invalid, naming ``source`` and the key path.
        """
        return _parse(data, Where(source), None if path is None else Path(path))


def _check_trainable(cfg: ArchConfig, img_size: int) -> None:
    """Raise ArchError if ``cfg`` cannot be proxy-trained at ``img_size``: beyond the grids
    (`ArchConfig.grids`), see `ArchConfig.single_element_attention`."""
    i = cfg.single_element_attention(img_size)
    if i is not None:
        grid = cfg.grids(img_size)[i]
        kv = cfg.kv_grid(i, grid)
        raise ArchError(
            f"stages[{i}] has head_interaction on a {grid[0]}x{grid[1]} grid with "
            f"{kv[0]}x{kv[1]} keys and no class token at img_size={img_size}: its "
            "attention map has one element, which instance norm cannot normalise in "
            "training (use a larger data.img_size, fewer stages, or head_mix: false)"
        )


class _Inexpressible(Exception):
    """Internal: why `params_of` cannot express a config (wrapped into a SpaceError)."""


def _first_difference(want: Any, got: Any, path: str = "") -> str:
    """Where two `ArchConfig.to_dict` trees first differ, for a readable params_of error."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in want:
            if want[key] != got.get(key):
                return _first_difference(want[key], got.get(key), f"{path}.{key}" if path else key)
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return (
        f"its {path} is {want!r} but the space can only make {got!r} there "
        "(a field the space derives or fixes)"
    )


# -- loading ---------------------------------------------------------------------------------------


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
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpaceError(f"{source}: cannot be read ({err})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SpaceError(f"{source}: is not valid YAML{at}: {problem}") from None
    return _parse(data, Where(source), p)


def _parse(data: Any, where: Where, path: Path | None) -> SearchSpace:
    """Every section, checked in file order, then the seeds against the finished space."""
    if data is None:
        raise where.error("is empty; a space file is a YAML mapping with at least `arch:`")
    if not isinstance(data, Mapping):
        raise where.error(
            f"must be a YAML mapping of space settings ({', '.join(_TOP_KEYS)}), got {_kind(data)}"
        )
    for key in data:
        if key not in _TOP_KEYS:
            raise (where / str(key)).error(f"is not a known key; known keys are {list(_TOP_KEYS)}")
    if "arch" not in data:
        raise (where / "arch").error("is missing: a space must declare its architecture parameters")

    name = _name(data, where, path)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise (where / "description").error(f"must be a string, got {_kind(description)}")
    target = _top_int(data, where, "target_img_size", 224)
    num_classes = _top_int(data, where, "num_classes", 1000)
    objectives = _objectives(data.get("objectives", ["accuracy", "gflops"]), where / "objectives")
    budgets = Budgets(**_section(data.get("budgets"), where / "budgets", _BUDGET_RULES))
    latency = LatencySettings(**_section(data.get("latency"), where / "latency", _LATENCY_RULES))
    data_cfg, train_cfg = _proxy_settings(data, where)
    early = _early_stopping(data.get("early_stopping"), where / "early_stopping", train_cfg)
    raw = data.get("sampler")
    sampler = _section(raw, where / "sampler", _SAMPLER_RULES)
    _kind_keys(raw, sampler, where / "sampler", _SAMPLER_KEYS)
    search = SearchSettings(**_section(data.get("search"), where / "search", _SEARCH_RULES))
    resources = Resources(**_section(data.get("resources"), where / "resources", _RESOURCE_RULES))
    params, max_stages = _arch(data["arch"], where / "arch")
    seeds = _seed_names(data.get("seeds", []), where / "seeds")

    space = SearchSpace(
        name=name,
        description=description,
        target_img_size=target,
        num_classes=num_classes,
        params=params,
        max_stages=max_stages,
        objectives=objectives,
        budgets=budgets,
        seeds=seeds,
        latency=latency,
        data=data_cfg,
        train=train_cfg,
        early_stopping=early,
        sampler=SamplerSettings(**sampler),
        search=search,
        resources=resources,
        path=path,
    )
    _check_seeds(space, where)
    return space


def _name(data: Mapping[str, Any], where: Where, path: Path | None) -> str:
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise (where / "name").error(
                f"must match [a-z0-9_-]+ (it names the study file), got {name!r}"
            )
        return name
    if path is None:
        raise (where / "name").error("is missing (and there is no file name to default to)")
    if not _NAME_RE.match(path.stem):
        raise (where / "name").error(
            f"is missing and the file stem {path.stem!r} is not a valid study name; set "
            "`name:` to something matching [a-z0-9_-]+"
        )
    return path.stem


def _top_int(data: Mapping[str, Any], where: Where, key: str, default: int) -> int:
    value = data.get(key, default)
    if not is_int(value) or value < 1:
        raise (where / key).error(f"must be a positive integer, got {value!r}")
    return value


def _objectives(raw: Any, where: Where) -> tuple[str, ...]:
    from dimsearch.search.study import OBJECTIVES  # here: importing a space stays Optuna-free

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
    from dimsearch.data import DataConfig
    from dimsearch.train import TrainConfig

    raw_data = data.get("data")
    try:
        data_cfg = DataConfig.from_dict({} if raw_data is None else raw_data, where="data")
        train_cfg = TrainConfig.from_dict(data.get("train"), where="train")
    except (DataError, TrainingError) as err:
        raise where.error(str(err)) from None
    return data_cfg, train_cfg


def _early_stopping(raw: Any, where: Where, train: TrainConfig) -> EarlyStopping:
    values = _section(raw, where, _EARLY_RULES)
    _kind_keys(raw, values, where, _EARLY_KEYS)
    if values["kind"] == "asha" and values["grace_period"] > train.epochs:
        raise (where / "grace_period").error(
            f"must be <= train.epochs (ASHA's max_t), got grace_period="
            f"{values['grace_period']}, epochs={train.epochs}"
        )
    return EarlyStopping(**values, max_t=train.epochs)


def _arch(raw: Any, where: Where) -> tuple[dict[str, Spec], int]:
    """The ``arch:`` declarations, expanded to one `Spec` per Optuna parameter name."""
    if not isinstance(raw, Mapping):
        raise where.error(f"must be a mapping of parameter declarations, got {_kind(raw)}")
    for key in raw:
        if key not in PARAMS:
            raise (where / str(key)).error(
                f"is not a parameter of the vocabulary; known keys are {list(PARAMS)}"
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
        raise where.error(f"must be a list of zoo model names, got {_kind(raw)}")
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
        over.append((name, space._over_budget(cfg)))
    if over and all(reasons for _, reasons in over):
        listed = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in over)
        raise (where / "budgets").error(
            f"exclude every seed, so the search could not start from any known model: {listed} "
            f"(at {space.target_img_size} px, {space.num_classes} classes)"
        )
