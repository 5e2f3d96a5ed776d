"""`ArchConfig`: the one description of a hierarchical vision transformer.

An `ArchConfig` is what the sampler produces, the builder consumes, the cost model measures, the
study stores (as JSON) and the exporter writes out. It is frozen, validated when made, and round
trips through a plain dict, so a trial record is enough to rebuild its model years later.

The family is general enough that PiT and ResT are points in it:

    stem ─► stage 1 ─► transition ─► stage 2 ─► ... ─► head
            (pos, blocks)            (pos, blocks)

* stem: ``patch`` (PiT's strided conv), ``conv3`` (ResT as released), ``conv7`` (ResT paper).
* each stage: depth, width, heads, MLP ratio, qkv bias, key/value spatial reduction
  (``sr_ratio`` > 1 with kind ``dwconv``/``avg``/``max``), optional head interaction (ResT's
  1x1 conv over heads + instance norm), and the positional encoding applied to its input grid
  (``le``/``gl``/``pa``/``none``). "Once after the stem" is stage 1's ``pos``.
* transitions between stages: ``dwconv`` (PiT), ``avg``/``max`` (pool + 1x1 projection),
  ``conv`` (ResT's 3x3 stride-2 patch embedding + BatchNorm).
* head: class token(s) (``token``, optionally distilled) or global average pooling (``avg``).

Only the Python standard library is used here, so configs can be validated and costed
(`dimsearch.cost.estimate`) without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dimsearch._rules import Rule, Where, check_fields
from dimsearch.errors import ArchError

__all__ = [
    "HEAD_POOLS",
    "KV_REDUCTIONS",
    "POS_ENCODINGS",
    "STEMS",
    "TRANSITIONS",
    "ArchConfig",
    "HeadConfig",
    "StageConfig",
    "StemConfig",
    "TransitionConfig",
    "conv_out",
]

# Named choices. The layer tables in `dimsearch.models.hvit` are keyed by exactly these names (a
# test checks it); they are repeated here so a config can be validated without importing torch.
STEMS = ("patch", "conv3", "conv7")
TRANSITIONS = ("dwconv", "avg", "max", "conv")
POS_ENCODINGS = ("le", "gl", "pa", "none")
KV_REDUCTIONS = ("dwconv", "avg", "max")
HEAD_POOLS = ("token", "avg")


def conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a conv or pool along one axis (PyTorch's floor rule)."""
    return (n + 2 * padding - kernel) // stride + 1


# -- field rules (`dimsearch._rules`); errors read "stage.depth must be a positive integer" --

_POSITIVE = Rule("int", low=1, text="a positive integer")
_FLAG = Rule("bool")

_STEM_RULES = {
    "kind": Rule("choice", choices=STEMS),
    "patch_size": _POSITIVE,
    "stride": _POSITIVE,
    "padding": Rule("int", low=0, text="a non-negative integer"),
}
_STAGE_RULES = {
    "depth": _POSITIVE,
    "dim": _POSITIVE,
    "heads": _POSITIVE,
    "mlp_ratio": Rule("number", text="a finite number"),
    "qkv_bias": _FLAG,
    "sr_ratio": _POSITIVE,
    "sr_kind": Rule("choice", choices=KV_REDUCTIONS),
    "head_interaction": _FLAG,
    "pos": Rule("choice", choices=POS_ENCODINGS),
}
_TRANSITION_RULES = {"kind": Rule("choice", choices=TRANSITIONS), "stride": _POSITIVE}
_HEAD_RULES = {"pool": Rule("choice", choices=HEAD_POOLS), "distilled": _FLAG}
_ARCH_RULES = {
    "in_chans": _POSITIVE,
    "norm_eps": Rule("number", low=0, low_open=True, text="a finite number > 0"),
    "drop_path_rate": Rule("number", low=0, high=1, high_open=True, text="in [0, 1)"),
}


def _where(owner: str) -> Where:
    return Where(path=owner, raises=ArchError)


@dataclass(frozen=True)
class StemConfig:
    """How pixels become the first token grid.

    Attributes:
        kind: ``patch`` — one ``Conv2d(in, C, patch_size, stride, padding)`` (PiT);
            ``conv3`` — 3x3 convs with strides 2-1-2, BN+ReLU after the first two, C/2 hidden
            (ResT as released, total stride 4); ``conv7`` — 7x7 stride-2 conv, BN, ReLU, 3x3
            stride-2 max pool (the stem the ResT paper's figures were measured with).
        patch_size, stride, padding: geometry of the ``patch`` stem only (ignored otherwise).
    """

    kind: str = "patch"
    patch_size: int = 16
    stride: int = 8
    padding: int = 0

    def __post_init__(self) -> None:
        check_fields(self, _STEM_RULES, _where("stem"))

    @property
    def steps(self) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, padding) of each conv or pool that changes the grid size."""
        if self.kind == "patch":
            return ((self.patch_size, self.stride, self.padding),)
        if self.kind == "conv3":
            return ((3, 2, 1), (3, 2, 1))  # the stride-1 conv between keeps the size
        return ((7, 2, 3), (3, 2, 1))  # conv7: conv then max pool

    def out_size(self, n: int) -> int:
        """Grid length after the stem for an input of length ``n``."""
        for kernel, stride, padding in self.steps:
            n = conv_out(n, kernel, stride, padding)
        return n


@dataclass(frozen=True)
class StageConfig:
    """One stage: a positional encoding on its input grid, then ``depth`` transformer blocks.

    Attributes:
        depth: number of pre-norm blocks.
        dim: token width C; must be divisible by ``heads``.
        heads: attention heads (head dim = dim / heads).
        mlp_ratio: MLP hidden width = int(dim * mlp_ratio).
        qkv_bias: bias on the query/key/value projections.
        sr_ratio: key/value spatial reduction (1 = full attention). Keys and values come from
            the grid reduced by a kernel ``sr+1``, stride ``sr``, padding ``sr//2`` op (ResT's
            EMSA) followed by a LayerNorm; class tokens are kept unreduced.
        sr_kind: the reduction op: ``dwconv`` (ResT), ``avg`` or ``max`` pooling.
        head_interaction: ResT's 1x1 conv across heads on the attention logits, then softmax,
            then instance norm. Needs heads > 1 (ResT switches it off for one head).
        pos: positional encoding applied to this stage's input grid.
    """

    depth: int
    dim: int
    heads: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    sr_ratio: int = 1
    sr_kind: str = "dwconv"
    head_interaction: bool = False
    pos: str = "none"

    def __post_init__(self) -> None:
        check_fields(self, _STAGE_RULES, _where("stage"))
        if self.dim % self.heads:
            raise ArchError(f"`dim % heads == 0` must hold, got dim={self.dim}, heads={self.heads}")
        if int(self.dim * self.mlp_ratio) < 1:
            raise ArchError(
                f"`int(dim * mlp_ratio) >= 1` must hold, got dim={self.dim}, "
                f"mlp_ratio={self.mlp_ratio}"
            )
        if self.head_interaction and self.heads < 2:
            raise ArchError(
                f"stage.head_interaction needs heads > 1 (a 1x1 conv across one head is a "
                f"scalar), got heads={self.heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @property
    def sr_geometry(self) -> tuple[int, int, int]:
        """(kernel, stride, padding) of the key/value reduction."""
        return self.sr_ratio + 1, self.sr_ratio, self.sr_ratio // 2


@dataclass(frozen=True)
class TransitionConfig:
    """The downsampling step between two stages (kernel ``stride+1``, padding ``stride//2``).

    Attributes:
        kind: ``dwconv`` — depthwise conv with channel multiplier C_out/C_in, class tokens
            through a Linear (PiT); ``avg``/``max`` — pooling then a 1x1 conv projection;
            ``conv`` — dense conv + BatchNorm (ResT's patch embedding).
        stride: spatial reduction factor.
    """

    kind: str = "dwconv"
    stride: int = 2

    def __post_init__(self) -> None:
        check_fields(self, _TRANSITION_RULES, _where("transition"))

    @property
    def geometry(self) -> tuple[int, int, int]:
        """(kernel, stride, padding) of the op."""
        return self.stride + 1, self.stride, self.stride // 2


@dataclass(frozen=True)
class HeadConfig:
    """How the last stage becomes logits.

    Attributes:
        pool: ``token`` — LayerNorm on the class token(s), Linear on token 0 (PiT);
            ``avg`` — LayerNorm on every token, mean of the spatial tokens, Linear (ResT).
        distilled: a second (distillation) token with its own Linear; in eval the two logits
            are averaged, as in DeiT/PiT. Needs ``pool='token'``.
    """

    pool: str = "token"
    distilled: bool = False

    def __post_init__(self) -> None:
        check_fields(self, _HEAD_RULES, _where("head"))
        if self.distilled and self.pool != "token":
            raise ArchError("head.distilled needs head.pool='token' (the distillation token)")

    @property
    def num_tokens(self) -> int:
        """Class tokens carried through the stages (0 for average pooling)."""
        if self.pool != "token":
            return 0
        return 2 if self.distilled else 1


@dataclass(frozen=True)
class ArchConfig:
    """A complete hierarchical ViT. See the module docstring for the family it spans.

    Attributes:
        stem: the pixels-to-tokens step.
        stages: one or more stages; stage 1's width is the stem's output width.
        transitions: one per gap between stages (``len(stages) - 1``).
        head: classification head.
        norm_eps: epsilon of every LayerNorm (PiT 1e-6, ResT 1e-5).
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        in_chans: input image channels.
        name: optional label (the zoo name, or a trial id); not part of the architecture.
    """

    stages: tuple[StageConfig, ...]
    stem: StemConfig = field(default_factory=StemConfig)
    transitions: tuple[TransitionConfig, ...] = ()
    head: HeadConfig = field(default_factory=HeadConfig)
    norm_eps: float = 1e-6
    drop_path_rate: float = 0.0
    in_chans: int = 3
    name: str = ""

    def __post_init__(self) -> None:
        # accept lists (e.g. from JSON) but store tuples so the config stays hashable
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "transitions", tuple(self.transitions))
        if not self.stages:
            raise ArchError("ArchConfig.stages must hold at least one stage, got none")
        for i, s in enumerate(self.stages):
            if not isinstance(s, StageConfig):
                raise ArchError(f"stages[{i}] must be a StageConfig, got {type(s).__name__}")
        if len(self.transitions) != len(self.stages) - 1:
            raise ArchError(
                f"`len(transitions) == len(stages) - 1` must hold, got "
                f"{len(self.transitions)} transitions for {len(self.stages)} stages"
            )
        for i, (t, prev, nxt) in enumerate(
            zip(self.transitions, self.stages[:-1], self.stages[1:], strict=True)
        ):
            if t.kind == "dwconv" and nxt.dim % prev.dim:
                raise ArchError(
                    f"transitions[{i}] kind 'dwconv' is a depthwise conv with a channel "
                    f"multiplier, so `stages[{i + 1}].dim % stages[{i}].dim == 0` must hold, "
                    f"got {nxt.dim} and {prev.dim}"
                )
        if self.stem.kind == "conv3" and self.stages[0].dim < 2:
            raise ArchError(
                f"stem kind 'conv3' has a hidden width of dim // 2, so `stages[0].dim >= 2` must "
                f"hold, got {self.stages[0].dim}"
            )
        check_fields(self, _ARCH_RULES, _where("ArchConfig"))

    # -- geometry ----------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Total number of transformer blocks."""
        return sum(s.depth for s in self.stages)

    def grids(self, img_size: int | tuple[int, int]) -> list[tuple[int, int]]:
        """Token grid (H, W) of every stage at a given input size.

        Raises:
            ArchError: if a grid (or a key/value grid) collapses below 1x1, or a learned
                positional encoding sits on a grid the chosen resolution cannot make.
        """
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
        for n in (h, w):
            _POSITIVE.check(n, _where("build") / "img_size")
        grid = (self.stem.out_size(h), self.stem.out_size(w))
        out = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                k, s, p = self.transitions[i - 1].geometry
                grid = (conv_out(grid[0], k, s, p), conv_out(grid[1], k, s, p))
            where = "the stem" if i == 0 else f"transitions[{i - 1}]"
            if min(grid) < 1:
                raise ArchError(
                    f"stage {i + 1} token grid collapses to {grid[0]}x{grid[1]} after {where} "
                    f"at img_size={h}x{w}; the grid must stay at least 1x1 "
                    f"(use a larger resolution or fewer/gentler downsampling steps)"
                )
            if stage.sr_ratio > 1:
                kv = self.kv_grid(i, grid)
                if min(kv) < 1:
                    raise ArchError(
                        f"stages[{i}].sr_ratio={stage.sr_ratio} reduces the {grid[0]}x{grid[1]} "
                        f"grid to {kv[0]}x{kv[1]} key/value tokens at img_size={h}x{w}; it "
                        f"must stay at least 1x1"
                    )
            out.append(grid)
        return out

    def kv_grid(self, stage: int, grid: tuple[int, int]) -> tuple[int, int]:
        """Key/value grid of ``stage`` given its token grid."""
        s = self.stages[stage]
        if s.sr_ratio == 1:
            return grid
        k, st, p = s.sr_geometry
        return conv_out(grid[0], k, st, p), conv_out(grid[1], k, st, p)

    def single_element_attention(self, img_size: int | tuple[int, int]) -> int | None:
        """The first stage whose head interaction sees a one-element attention map at
        ``img_size``, or None.

        ResT's head interaction instance-normalises each head's (queries x keys) map; on a 1x1
        grid with no class token that map has one element, which torch refuses in training
        (ResT's stage 4 at 32 px). Inference is fine, so this matters for proxy training only.
        """
        tokens = self.head.num_tokens
        for i, (stage, grid) in enumerate(zip(self.stages, self.grids(img_size), strict=True)):
            if not stage.head_interaction:
                continue
            kv = self.kv_grid(i, grid)
            if (grid[0] * grid[1] + tokens) * (kv[0] * kv[1] + tokens) == 1:
                return i
        return None

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["stages"] = list(d["stages"])
        d["transitions"] = list(d["transitions"])
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise ArchError(f"an ArchConfig dict must be a mapping, got {type(data).__name__}")
        data = dict(data)
        _reject_unknown("ArchConfig", data, cls)
        if "stages" not in data:
            raise ArchError("ArchConfig dict is missing the required key 'stages'")
        for key in ("stages", "transitions"):
            if not isinstance(data.get(key, ()), (list, tuple)):
                raise ArchError(f"ArchConfig.{key} must be a list, got {data[key]!r}")
        stages = [_sub(StageConfig, f"stages[{i}]", s) for i, s in enumerate(data["stages"])]
        transitions = [
            _sub(TransitionConfig, f"transitions[{i}]", t)
            for i, t in enumerate(data.get("transitions", ()))
        ]
        kwargs = {k: v for k, v in data.items() if k not in ("stages", "transitions")}
        if "stem" in kwargs:
            kwargs["stem"] = _sub(StemConfig, "stem", kwargs["stem"])
        if "head" in kwargs:
            kwargs["head"] = _sub(HeadConfig, "head", kwargs["head"])
        return cls(stages=tuple(stages), transitions=tuple(transitions), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> ArchConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _reject_unknown(owner: str, data: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ArchError(f"{owner} has unknown keys {unknown}; known keys are {sorted(known)}")


def _sub(cls: type, owner: str, data: Any) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ArchError(f"{owner} must be a mapping, got {type(data).__name__}")
    _reject_unknown(owner, data, cls)
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ArchError(f"{owner} is missing the required keys {missing}")
    try:
        return cls(**data)
    except ArchError as err:
        raise ArchError(f"{owner}: {err}") from None
