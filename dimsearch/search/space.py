"""`SearchSpace`: a validated space file that samples `ArchConfig`s and says how to judge them.

A space file (``spaces/pit.yaml``) holds everything a search needs: the architecture
parameters (constants or Optuna distributions, vocabulary in `dimsearch.search._params`), the
objectives and budgets, the zoo models to start from, the proxy data and training, early
stopping, the sampler and the Ray resources. `load_space` (`dimsearch.search.loader`) checks
all of it before anything else happens; the settings sections are the dataclasses of
`dimsearch.search.settings` and `dimsearch.search.budgets`.

The space is the only place that knows how Optuna parameters become an architecture:

    params (stages, s1.depth, pool, ...) --sample--> ArchConfig --params_of--> params

`sample` is define-by-run, so a parameter exists only where it means something (``s4.depth``
only for four-stage samples, ``patch_size`` only for the patch stem), and irrelevant fields get
one canonical value, so two trials never train the same network under different names.

Importing this module imports neither torch nor Optuna; loading a space imports the
training settings (`dimsearch.train.config`), sampling imports Optuna.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dimsearch.config import ArchConfig, HeadConfig, StageConfig, StemConfig, TransitionConfig
from dimsearch.errors import ArchError, SpaceError
from dimsearch.search._params import PARAMS, Spec
from dimsearch.search.budgets import Budgets
from dimsearch.search.settings import (
    EARLY_STOPPING,
    KIND_KEYS,
    LATENCY_DEVICES,
    OBJECTIVES,
    SAMPLERS,
    EarlyStopping,
    LatencySettings,
    Resources,
    SamplerSettings,
    SearchSettings,
)

if TYPE_CHECKING:
    import optuna

    from dimsearch.data.config import DataConfig
    from dimsearch.train.config import TrainConfig

# The settings types are re-exported: they are part of what a space is.
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
]

# What a stage gets for a field the space leaves unused (sr_kind where sr == 1): the config's
# own default, so the same network always has the same config.
_STAGE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StageConfig)}


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
        over-budget sample in microseconds. Latency is checked by `check_latency`, on the
        figure predicted from the device's part table (`dimsearch.search.gate`) and again on
        the one measured at trial start.
        """
        over = self.budget_violations(cfg)
        if not over:
            return None
        return f"{'; '.join(over)} (at {self.target_img_size} px, {self.num_classes} classes)"

    def budget_violations(self, cfg: ArchConfig) -> list[str]:
        """`Budgets.violations` of ``cfg``'s analytic GFLOPs and params (no latency)."""
        from dimsearch.cost import estimate

        est = estimate(cfg, self.target_img_size, self.num_classes)
        return self.budgets.violations({"gflops": est.gflops, "params_m": est.mparams})

    def check_latency(self, latency_ms: float) -> str | None:
        """Why a latency (measured, or predicted by `dimsearch.search.gate`) is over
        ``budgets.max_latency_ms``, or None."""
        over = self.budgets.violations({"latency_ms": latency_ms})
        if not over:
            return None
        return f"{over[0]} ({self.latency.device}, batch {self.latency.batch})"

    # -- sampler -------------------------------------------------------------------------------

    def make_sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """A fresh Optuna sampler as the ``sampler:`` section says (`SamplerSettings.make`).

        Args:
            seed_offset: added to the seed, e.g. the study's trial count when resuming, so a
                second ``dimsearch run`` does not replay the first run's random start-up
                samples (enqueue-free duplicates waste whole trainings).

        The TPE sampler is multivariate with ``group=True``: the space is conditional
        (``s4.depth`` exists only for four stages), and grouping models the parameters that
        occur together jointly instead of falling back to independent sampling for them.
        """
        return self.sampler.make(seed_offset)

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

        ``space_from_dict(space.to_dict()) == space`` (`dimsearch.search.loader`); a study stores it in its user
        attrs so what was searched is known without the file.
        """
        sampler = {"kind": self.sampler.kind}
        sampler.update(
            {k: getattr(self.sampler, k) for k in KIND_KEYS["sampler"][self.sampler.kind]}
        )
        early = {"kind": self.early_stopping.kind}
        early_keys = KIND_KEYS["early_stopping"][self.early_stopping.kind]
        early.update({k: getattr(self.early_stopping, k) for k in early_keys})
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
