"""The parameter vocabulary of a search space: what each ``arch:`` key means and accepts.

A space declares every architecture parameter once, either as a constant or as an Optuna
distribution (a `Spec`). `PARAMS` is the one table of the keys: validation messages, the
table in ``docs/spaces.md``, the order `SearchSpace.sample` asks for parameters and the
Optuna parameter names (``stages``, ``s2.depth``, ...) all come from it, so they cannot drift
apart.

Per-stage keys (``depth``, ``head_mult``, ``sr``, ``mlp_ratio``) expand into one declaration
per possible stage, named ``s{i}.{key}``; that name is both the Optuna parameter and the
dashboard column, so it has to stay stable across releases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dimsearch._rules import Rule, Where, as_number, check_keys
from dimsearch._values import is_int, is_number
from dimsearch.config import HEAD_POOLS, KV_REDUCTIONS, POS_ENCODINGS, STEMS, TRANSITIONS

if TYPE_CHECKING:
    import optuna

__all__ = ["PARAMS", "POS_PLACEMENTS", "REQUIRED", "Param", "Spec", "Where", "parse_decl"]

# `Where` lives in `dimsearch._rules` (every config names its errors with it); it is
# re-exported here, where the space code has always found it.

# Where a positional encoding goes: once on the stem's grid (stage 1 only, PiT) or on the
# input grid of every stage (ResT).
POS_PLACEMENTS = ("stem", "stages")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a vocabulary default meaning "the space must declare this key"


@dataclass(frozen=True)
class Param:
    """One ``arch:`` key of the vocabulary.

    Attributes:
        key: the YAML key (and, for a global key, the Optuna parameter name).
        rule: what one value accepts (`dimsearch._rules.Rule`): an ``int``, a ``number``
            (the key samples floats), a ``bool`` or a ``choice`` from a `dimsearch.config`
            table (e.g. ``TRANSITIONS``).
        doc: what it controls, for the docs table.
        default: the constant used when a space omits the key, or `REQUIRED`.
        first_stage: 0 for a global key; 1 or 2 for a per-stage key that exists from that stage
            on (a stage-1 ``head_mult`` would mean nothing: stage 1's heads are ``heads``).
        when: when the parameter is suggested (define-by-run conditions), for the docs table.
    """

    key: str
    rule: Rule
    doc: str
    default: Any = REQUIRED
    first_stage: int = 0
    when: str = "always"

    @property
    def kind(self) -> str:
        """``int``, ``float``, ``bool`` or ``choice``: what the key's declarations hold."""
        return "float" if self.rule.kind == "number" else self.rule.kind

    @property
    def expected(self) -> str:
        """The rule of one value in words, for error messages."""
        return self.rule.expected

    @property
    def per_stage(self) -> bool:
        return self.first_stage > 0

    def name(self, stage: int | None = None) -> str:
        """The Optuna parameter name: ``key`` or ``s{stage}.{key}``."""
        return f"s{stage}.{self.key}" if self.per_stage else self.key

    def check(self, value: Any, where: Where) -> Any:
        """The value, converted as a file needs (`Rule.parse`: float keys hold floats), or an
        error stating the rule."""
        return self.rule.parse(value, where)


def _int(minimum: int) -> Rule:
    return Rule("int", low=minimum)


def _choice(names: tuple[str, ...]) -> Rule:
    return Rule("choice", choices=names)


_BOOL = Rule("bool")
_POSITIVE = Rule("number", low=0, low_open=True)
_STAGE = "stage i exists"

# The vocabulary, in the order `SearchSpace.sample` suggests (per-stage keys stage by stage).
# Defaults are those of `ArchConfig`'s parts, so an omitted key means what the config means.
_PARAM_LIST = (
    Param("stages", _int(1), doc="number of stages"),
    Param(
        "stem",
        _choice(STEMS),
        doc="pixels-to-tokens step",
        default="patch",
    ),
    Param(
        "patch_size",
        _int(2),
        default=16,
        when="stem == patch",
        doc="patch stem kernel; stride = patch_size // 2 (PiT's overlap), padding 0",
    ),
    Param("heads", _int(1), doc="attention heads of stage 1"),
    Param("head_dim", _int(1), doc="width per head, the same in every stage"),
    Param(
        "head_mult",
        _int(1),
        first_stage=2,
        when=_STAGE,
        doc="heads_i = heads_(i-1) * s{i}.head_mult",
    ),
    Param("depth", _int(1), first_stage=1, when=_STAGE, doc="blocks in stage i"),
    Param(
        "sr",
        _int(1),
        default=1,
        first_stage=1,
        when=_STAGE,
        doc="key/value spatial reduction of stage i (1 = none)",
    ),
    Param(
        "mlp_ratio",
        _POSITIVE,
        default=4.0,
        first_stage=1,
        when=_STAGE,
        doc="MLP hidden width / width, in stage i",
    ),
    Param(
        "sr_kind",
        _choice(KV_REDUCTIONS),
        default="dwconv",
        when="some stage has sr > 1",
        doc="key/value reduction op of the stages with sr > 1",
    ),
    Param(
        "head_mix",
        _BOOL,
        default=False,
        when="some stage has heads > 1",
        doc="ResT's head interaction, on every stage with more than one head",
    ),
    Param("qkv_bias", _BOOL, default=True, doc="bias on the q/k/v projections"),
    Param(
        "pool",
        _choice(TRANSITIONS),
        default="dwconv",
        when="stages > 1",
        doc="transition between stages (stride 2)",
    ),
    Param(
        "pos",
        _choice(POS_ENCODINGS),
        default="none",
        doc="positional encoding",
    ),
    Param(
        "pos_at",
        _choice(POS_PLACEMENTS),
        default="stem",
        when="pos != none and stages > 1",
        doc="`stem`: stage 1's input only; `stages`: every stage's input",
    ),
    Param(
        "head",
        _choice(HEAD_POOLS),
        default="token",
        doc="class token or global average pooling",
    ),
    Param(
        "distilled",
        _BOOL,
        default=False,
        when="head == token",
        doc="a DeiT distillation token",
    ),
    Param(
        "norm_eps",
        _POSITIVE,
        default=1e-6,
        doc="LayerNorm epsilon (PiT 1e-6, ResT 1e-5)",
    ),
    Param(
        "drop_path",
        Rule("number", low=0, high=1, high_open=True),
        default=0.0,
        doc="stochastic depth rate (train.drop_path overrides it)",
    ),
)
PARAMS: dict[str, Param] = {p.key: p for p in _PARAM_LIST}


# -- declarations --------------------------------------------------------------------------------

_RANGE_KEYS = ("low", "high", "step", "log")


@dataclass(frozen=True)
class Spec:
    """One parameter declaration: a constant, a categorical, or an int/float range.

    Attributes:
        kind: ``const``, ``choices``, ``int`` or ``float``.
        value: the constant (``const`` only).
        choices: the options (``choices`` only), in the order written.
        low, high, step, log: the range (``int``/``float`` only), as Optuna takes them.
    """

    kind: str
    value: Any = None
    choices: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    @property
    def fixed(self) -> bool:
        """A constant: never suggested, never an Optuna parameter."""
        return self.kind == "const"

    def suggest(self, trial: optuna.Trial | optuna.trial.FixedTrial, name: str) -> Any:
        """The value for this trial (define-by-run: only called when the parameter applies)."""
        if self.kind == "const":
            return self.value
        if self.kind == "choices":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def find(self, value: Any) -> tuple[bool, Any]:
        """``(True, v)`` when ``value`` is in the declaration, ``v`` the exact value to suggest.

        A float ``4.0`` matches a choice ``4``; the choice itself is returned so the Optuna
        parameter is one of the declared options. ``True`` never matches ``1``.
        """
        if self.kind == "const":
            return _same(self.value, value), self.value
        if self.kind == "choices":
            for c in self.choices:
                if _same(c, value):
                    return True, c
            return False, None
        if not is_number(value) or not self.low <= value <= self.high:
            return False, None
        if self.kind == "int":
            ok = is_int(value) and (value - self.low) % (self.step or 1) == 0
            return ok, value
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) > 1e-9:
                return False, None
        return True, float(value)

    def describe(self) -> str:
        """What the declaration allows, for error messages."""
        if self.kind == "const":
            return f"the constant {self.value!r}"
        if self.kind == "choices":
            return f"one of {list(self.choices)}"
        what = "integers" if self.kind == "int" else "numbers"
        extra = f" in steps of {self.step}" if self.step not in (None, 1) else ""
        extra += " (log scale)" if self.log else ""
        return f"{what} in [{self.low}, {self.high}]{extra}"

    def upper(self) -> Any:
        """The largest value the declaration can take (used for the stage count)."""
        if self.kind == "const":
            return self.value
        if self.kind == "choices":
            return max(self.choices)
        return self.high

    def to_yaml(self) -> Any:
        """The declaration as written in a space file."""
        if self.kind == "const":
            return self.value
        if self.kind == "choices":
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same sort: YAML's ``true`` must not match an option ``1``."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def parse_decl(param: Param, raw: Any, where: Where) -> Spec:
    """One declaration (a scalar constant or a mapping), checked against the vocabulary."""
    if isinstance(raw, Mapping):
        return _parse_mapping(param, raw, where)
    if isinstance(raw, list):
        hint = (
            "a list gives one declaration per stage, which only per-stage keys "
            f"({', '.join(k for k, p in PARAMS.items() if p.per_stage)}) take"
            if not param.per_stage
            else "a per-stage list holds one declaration per stage, not nested lists"
        )
        raise where.error(
            f"must be a constant, {{choices: [...]}} or {{low: .., high: ..}}; {hint}; "
            f"for a categorical write {{choices: {raw}}}"
        )
    return Spec("const", value=param.check(raw, where))


def _parse_mapping(param: Param, raw: Mapping[str, Any], where: Where) -> Spec:
    keys = set(raw)
    known = ("choices", *_RANGE_KEYS)
    check_keys(
        raw,
        where,
        known,
        "is not a declaration key; a declaration is {{choices: [...]}} or "
        "{{low, high, step, log}} (known keys: {known})",
    )
    if "choices" in keys:
        if keys != {"choices"}:
            raise where.error(
                f"mixes `choices` with {sorted(keys - {'choices'})}: a declaration is either "
                "a categorical {choices: [...]} or a range {low, high, step, log}"
            )
        return _parse_choices(param, raw["choices"], where / "choices")
    if param.kind not in ("int", "float"):
        raise where.error(
            f"is a {param.kind} key: it takes a constant or {{choices: [...]}}, not a "
            f"{{low, high}} range"
        )
    for key in ("low", "high"):
        if key not in raw:
            raise (where / key).error(
                f"is missing: a range needs both `low` and `high` ({param.expected})"
            )
    return _parse_range(param, raw, where)


def _parse_choices(param: Param, raw: Any, where: Where) -> Spec:
    if not isinstance(raw, list):
        raise where.error(f"must be a list of options ({param.expected} each), got {raw!r}")
    if not raw:
        raise where.error(f"must not be empty: give at least one option ({param.expected})")
    out: list[Any] = []
    for i, value in enumerate(raw):
        value = param.check(value, where / i)
        if any(_same(value, c) for c in out):
            raise (where / i).error(f"repeats the option {value!r}")
        out.append(value)
    return Spec("choices", choices=tuple(out))


def _parse_range(param: Param, raw: Mapping[str, Any], where: Where) -> Spec:
    integer = param.kind == "int"
    bounds = {}
    for key in ("low", "high"):
        value = raw[key] if integer else as_number(raw[key])
        if not (is_int(value) if integer else is_number(value)):
            kind = "an integer" if integer else "a number"
            raise (where / key).error(f"must be {kind}, got {raw[key]!r}")
        bounds[key] = param.check(value, where / key)
    low, high = bounds["low"], bounds["high"]
    if low > high:
        raise (where / "low").error(
            f"must be <= high: `low <= high` must hold, got (low={low}, high={high})"
        )
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise (where / "log").error(f"must be true or false, got {log!r}")
    step = raw.get("step")
    if step is not None:
        step = step if integer else as_number(step)
        if not (is_int(step) if integer else is_number(step)) or step <= 0:
            kind = "a positive integer" if integer else "a number > 0"
            raise (where / "step").error(f"must be {kind}, got {raw['step']!r}")
        if log and (step != 1 or not integer):
            raise (where / "step").error(
                f"cannot be combined with log: true (Optuna samples a log range without "
                f"steps), got step={step}"
            )
        k = (high - low) / step
        if abs(k - round(k)) > 1e-9:
            raise (where / "step").error(
                f"must divide high - low so `high` is reachable, got step={step}, "
                f"low={low}, high={high}"
            )
    if log and low <= 0:
        raise (where / "low").error(f"must be > 0 for a log range, got {low}")
    if integer:
        return Spec("int", low=low, high=high, step=step, log=log)
    return Spec(
        "float",
        low=float(low),
        high=float(high),
        step=None if step is None else float(step),
        log=log,
    )
