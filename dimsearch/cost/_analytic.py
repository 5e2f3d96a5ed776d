"""Analytic parameters and FLOPs of an `ArchConfig`, without building (or importing) a model.

pycls habit: every part of the network has a closed-form ``(params, flops)``, so a search can
reject an over-budget sample in microseconds instead of building and tracing it. The
conventions are exactly those of :func:`dimsearch.cost.count_flops` (fvcore with our SDPA
handle), so the two agree to the FLOP, and a test holds them to it:

* one multiply-add is one FLOP; conv and linear biases are free;
* a conv costs ``C_out * (C_in / groups) * k * k`` per output pixel;
* LayerNorm 5 per element, eval BatchNorm 2 per element, affine-free InstanceNorm 4;
* attention costs ``N * M * (d + d_v)`` per head for ``q @ k^T`` and ``attn @ v``;
* pooling, activations, softmax, residual adds, gates, position adds and the mean of the GAP
  head cost nothing.

All figures are per image (fvcore counts scale linearly with the batch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dimsearch._values import is_int
from dimsearch.config import ArchConfig, StageConfig, StemConfig, TransitionConfig, conv_out

__all__ = ["CostEstimate", "PartCost", "estimate"]

# fvcore's per-element costs (fvcore.nn.jit_handles.norm_flop_counter / batchnorm_flop_jit)
_LAYER_NORM = 5  # affine LayerNorm
_BATCH_NORM_EVAL = 2  # affine BatchNorm with running statistics
_INSTANCE_NORM = 4  # InstanceNorm2d without affine (ResT's transform_norm)


@dataclass(frozen=True)
class PartCost:
    """Cost of one part of the network, for one image.

    Attributes:
        name: ``stem``, ``stage1`` ... ``stageK`` or ``head``.
        grid: the token grid (H, W) the part produces (the head reports the last stage's).
        tokens: sequence length the part works on: class tokens plus ``H * W``.
        params: parameters owned by the part. The stem owns the class tokens; a stage owns
            the transition into it, its positional encoding and its blocks; the head owns
            the final norm and the classifier(s).
        flops: multiply-adds of the part (see the module docstring for the conventions).
        kv_grid: key/value grid of a stage's attention (``None`` outside stages).
    """

    name: str
    grid: tuple[int, int]
    tokens: int
    params: int
    flops: int
    kv_grid: tuple[int, int] | None = None


@dataclass(frozen=True)
class CostEstimate:
    """Analytic cost of an architecture at one input size.

    Attributes:
        params: all parameters (equals `count_params` of the built model).
        flops: multiply-adds per image (equals `count_flops` of the built model).
        parts: per-part breakdown, in forward order; sums to ``params`` and ``flops``.
        img_size: input (H, W) the figures are for.
        num_classes: classifier width the figures are for.
    """

    params: int
    flops: int
    parts: tuple[PartCost, ...]
    img_size: tuple[int, int]
    num_classes: int

    @property
    def gflops(self) -> float:
        """FLOPs in units of 1e9, the unit papers report."""
        return self.flops / 1e9

    @property
    def mparams(self) -> float:
        """Parameters in units of 1e6, the unit papers report."""
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict."""
        return asdict(self)


def estimate(
    cfg: ArchConfig, img_size: int | tuple[int, int] = 224, num_classes: int = 1000
) -> CostEstimate:
    """Parameters and FLOPs of ``build_model(cfg, num_classes, img_size)`` from formulas.

    Nothing is built and torch is not imported, so this is cheap enough to run on every
    sample of a search before deciding whether it is worth training.

    Args:
        cfg: the architecture.
        img_size: input size, ``int`` for square or ``(H, W)``. A learned position map is
            sized by it, so parameters can depend on it too.
        num_classes: classifier width; 0 means no classifier (features only).

    Returns:
        Totals and a per-part breakdown (stem, each stage, head).

    Raises:
        ArchError: if the geometry is impossible at this size (a grid below 1x1).
        ValueError: if ``num_classes`` is negative.
    """
    if not is_int(num_classes) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    grids = cfg.grids(size)  # raises ArchError on impossible geometry
    t = cfg.head.num_tokens
    parts = [_stem(cfg, size, grids[0], t)]
    parts += (_stage(cfg, i, grid, t) for i, grid in enumerate(grids))
    parts.append(_head(cfg, grids[-1], t, num_classes))
    return CostEstimate(
        params=sum(p.params for p in parts),
        flops=sum(p.flops for p in parts),
        parts=tuple(parts),
        img_size=size,
        num_classes=num_classes,
    )


def _conv(
    c_in: int, c_out: int, k: int, pixels: int, *, groups: int = 1, bias: bool = True
) -> tuple[int, int]:
    """(params, flops) of a Conv2d producing ``pixels`` output positions."""
    weight = c_out * (c_in // groups) * k * k
    return weight + (c_out if bias else 0), weight * pixels


def _linear(c_in: int, c_out: int, rows: int, *, bias: bool = True) -> tuple[int, int]:
    """(params, flops) of a Linear applied to ``rows`` tokens."""
    return c_in * c_out + (c_out if bias else 0), rows * c_in * c_out


def _sum(*costs: tuple[int, int]) -> tuple[int, int]:
    params = flops = 0
    for p, f in costs:  # a plain loop: this runs per sample in a search, keep it cheap
        params += p
        flops += f
    return params, flops


def _stem_half(size: tuple[int, int], kernel: int = 3, padding: int = 1) -> int:
    """Pixels after the stride-2 first conv of the ``conv3``/``conv7`` stems."""
    return conv_out(size[0], kernel, 2, padding) * conv_out(size[1], kernel, 2, padding)


def _stem(cfg: ArchConfig, size: tuple[int, int], grid: tuple[int, int], t: int) -> PartCost:
    stem: StemConfig = cfg.stem
    c_in, dim = cfg.in_chans, cfg.stages[0].dim
    out = grid[0] * grid[1]
    if stem.kind == "patch":
        cost = _conv(c_in, dim, stem.patch_size, out)
    elif stem.kind == "conv3":
        hidden = dim // 2
        g1 = _stem_half(size)
        cost = _sum(
            _conv(c_in, hidden, 3, g1, bias=False),
            (2 * hidden, _BATCH_NORM_EVAL * hidden * g1),
            _conv(hidden, hidden, 3, g1, bias=False),
            (2 * hidden, _BATCH_NORM_EVAL * hidden * g1),
            _conv(hidden, dim, 3, out, bias=False),
        )
    else:  # conv7: the 7x7/2 conv and its BN run on the grid before the max pool halves it
        g1 = _stem_half(size, kernel=7, padding=3)
        cost = _sum(
            _conv(c_in, dim, 7, g1, bias=False),
            (2 * dim, _BATCH_NORM_EVAL * dim * g1),
        )
    params = cost[0] + t * dim  # the class tokens are born here
    return PartCost("stem", grid, t + out, params, cost[1])


def _stage(cfg: ArchConfig, i: int, grid: tuple[int, int], t: int) -> PartCost:
    """Stage ``i`` with the transition into it and its positional encoding."""
    stage = cfg.stages[i]
    kv = cfg.kv_grid(i, grid)
    costs = [_pos(stage, grid)]
    if i > 0:
        costs.append(_transition(cfg.transitions[i - 1], cfg.stages[i - 1].dim, stage.dim, grid, t))
    block_params, block_flops = _block(stage, grid, kv, t)
    params, flops = _sum(*costs, (stage.depth * block_params, stage.depth * block_flops))
    return PartCost(f"stage{i + 1}", grid, t + grid[0] * grid[1], params, flops, kv_grid=kv)


def _transition(
    tr: TransitionConfig, c_in: int, c_out: int, grid: tuple[int, int], t: int
) -> tuple[int, int]:
    k = tr.geometry[0]
    out = grid[0] * grid[1]
    tokens = _linear(c_in, c_out, t) if t else (0, 0)
    if tr.kind == "dwconv":
        grid_op = _conv(c_in, c_out, k, out, groups=c_in)
    elif tr.kind in ("avg", "max"):  # the pooling itself is free; the 1x1 projection is not
        grid_op = _conv(c_in, c_out, 1, out)
    else:  # conv: dense conv + BatchNorm
        grid_op = _sum(_conv(c_in, c_out, k, out), (2 * c_out, _BATCH_NORM_EVAL * c_out * out))
    return _sum(tokens, grid_op)


def _pos(stage: StageConfig, grid: tuple[int, int]) -> tuple[int, int]:
    dim, pixels = stage.dim, grid[0] * grid[1]
    if stage.pos == "le":
        return dim * pixels, 0  # the add is free
    if stage.pos in ("gl", "pa"):
        return _conv(dim, dim, 3, pixels, groups=dim)  # add / sigmoid gate are free
    return 0, 0


def _block(
    stage: StageConfig, grid: tuple[int, int], kv: tuple[int, int], t: int
) -> tuple[int, int]:
    c, bias = stage.dim, stage.qkv_bias
    n = t + grid[0] * grid[1]
    norm = (2 * c, _LAYER_NORM * n * c)
    if stage.sr_ratio == 1:
        m = n
        qkv = _linear(c, 3 * c, n, bias=bias)
    else:
        m = t + kv[0] * kv[1]  # class tokens join the reduced grid unreduced
        k = stage.sr_geometry[0]
        reduce = _conv(c, c, k, kv[0] * kv[1], groups=c) if stage.sr_kind == "dwconv" else (0, 0)
        qkv = _sum(
            _linear(c, c, n, bias=bias),
            reduce,
            (2 * c, _LAYER_NORM * m * c),  # sr_norm
            _linear(c, 2 * c, m, bias=bias),
        )
    h = stage.heads
    attn = (0, 2 * n * m * c)  # q @ k^T and attn @ v over all heads
    if stage.head_interaction:  # 1x1 conv over heads + InstanceNorm on the (h, N, M) map
        attn = _sum(attn, _conv(h, h, 1, n * m), (0, _INSTANCE_NORM * h * n * m))
    mlp = _sum(_linear(c, stage.mlp_hidden, n), _linear(stage.mlp_hidden, c, n))
    return _sum(norm, qkv, attn, _linear(c, c, n), norm, mlp)


def _head(cfg: ArchConfig, grid: tuple[int, int], t: int, num_classes: int) -> PartCost:
    c = cfg.stages[-1].dim
    # token pool: norm on the class tokens only; avg pool: norm on every token, then a free mean
    normed = t if t else grid[0] * grid[1]
    cost = (2 * c, _LAYER_NORM * normed * c)
    if num_classes:
        heads = 2 if cfg.head.distilled else 1  # a distilled head has a second Linear
        fc = _linear(c, num_classes, 1)
        cost = _sum(cost, (heads * fc[0], heads * fc[1]))
    return PartCost("head", grid, t + grid[0] * grid[1], cost[0], cost[1])
