"""The hierarchical vision transformer generator: one `ArchConfig` in, one `nn.Module` out.

Papers whose models are exact points of this family:

* PiT — Heo et al., "Rethinking Spatial Dimensions of Vision Transformers", ICCV 2021
  (patch stem, learned position map, class tokens, depthwise-conv pooling).
* ResT — Zhang & Yang, "ResT: An Efficient Transformer for Visual Recognition", NeurIPS 2021
  (conv stem, pixel-attention positions, key/value reduction, head interaction, conv patch
  embedding between stages, average-pooled head).

`HViT` is assembled from ready-made parts (stem, stages, head widths). Which part each named
choice of the config is made of lives in the tables below; `model_call` turns a config into the
constructor calls of its parts, which `build_model` runs and `dimsearch export` writes out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from dimsearch.config import ArchConfig, StageConfig
from dimsearch.layers import (
    Attention,
    Block,
    Conv3Stem,
    Conv7Stem,
    ConvEmbed,
    DWConvPool,
    EfficientAttention,
    GroupLinearPos,
    LearnedPos,
    PatchStem,
    PixelAttentionPos,
    PoolProject,
    Stage,
    drop_path_rates,
)
from dimsearch.models._call import Call, Each, Var, build

__all__ = [
    "KV_REDUCTIONS",
    "POS_ENCODINGS",
    "STEMS",
    "TRANSITIONS",
    "HViT",
    "build_model",
    "model_call",
]


class HViT(nn.Module):
    """A hierarchical vision transformer: stem, stages, then a class-token or pooled head.

    ``num_tokens`` class tokens of width ``embed_dim`` travel through the stages: 0 means the
    head averages the last stage's normed tokens, 1 a class token, 2 a class and a
    distillation token with a head each. ``forward`` returns logits; a distilled model returns
    the mean of its two heads unless ``distilled_training`` is set and the model is training,
    in which case it returns both (as timm's PiT does).
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: list[nn.Module],
        embed_dim: int,
        num_features: int,
        num_classes: int = 1000,
        num_tokens: int = 0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_tokens = num_tokens
        self.num_features = num_features
        self.stem = stem
        self.cls_token = None
        if num_tokens:
            self.cls_token = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(num_features, eps=norm_eps)
        self.head = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = None
        if num_tokens == 2:
            self.head_dist = (
                nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
            )
        self.distilled_training = False
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters timm's optimizer factory should not decay (positions, class tokens)."""
        return {n for n, _ in self.named_parameters() if n.endswith(("pos_embed", "cls_token"))}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features: normed class tokens (B, T, C), or pooled grid tokens (B, C)."""
        x = self.stem(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1) if self.cls_token is not None else None
        t = self.num_tokens
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            seq, grid = stage(x, cls)
            if i == last:
                break
            # the tokens split back into class tokens and a grid for the next stage
            cls = seq[:, :t] if t else None
            x = seq[:, t:].transpose(1, 2).reshape(seq.shape[0], -1, *grid)
        if t:
            return self.norm(seq[:, :t])
        return self.norm(seq).mean(dim=1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self.num_tokens:
            return self.head(x)
        if self.head_dist is None:
            return self.head(x[:, 0])
        logits, dist = self.head(x[:, 0]), self.head_dist(x[:, 1])
        if self.distilled_training and self.training:
            return logits, dist
        return (logits + dist) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    """timm's ViT habit: truncated-normal Linear weights, zero biases, unit norms; convs keep
    PyTorch's default init (as PiT does). Loaded weights replace all of it."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# -- the named choices: one entry per kind, each the constructor call of its layer ----------------
# (a `Var` argument is a value the exported file computes; see `dimsearch.models._call`)


def _avg_pool(kernel: int, stride: int, padding: int) -> Call:
    return Call(nn.AvgPool2d, kernel, stride=stride, padding=padding, count_include_pad=False)


def _max_pool(kernel: int, stride: int, padding: int) -> Call:
    return Call(nn.MaxPool2d, kernel, stride=stride, padding=padding)


STEMS = {  # (stem config, input channels, width)
    "patch": lambda s, c, dim: Call(
        PatchStem, c, dim, patch_size=s.patch_size, stride=s.stride, padding=s.padding
    ),
    "conv3": lambda s, c, dim: Call(Conv3Stem, c, dim),
    "conv7": lambda s, c, dim: Call(Conv7Stem, c, dim),
}
POS_ENCODINGS = {  # (width, grid (H, W))
    "le": lambda dim, grid: Call(LearnedPos, dim, grid),
    "gl": lambda dim, grid: Call(GroupLinearPos, dim),
    "pa": lambda dim, grid: Call(PixelAttentionPos, dim),
    "none": lambda dim, grid: Call(nn.Identity),
}
TRANSITIONS = {  # (width in, width out, transition config, whether class tokens need a Linear)
    "dwconv": lambda a, b, t, fc: Call(DWConvPool, a, b, stride=t.stride, token_fc=fc),
    "avg": lambda a, b, t, fc: Call(PoolProject, a, b, _avg_pool(*t.geometry), token_fc=fc),
    "max": lambda a, b, t, fc: Call(PoolProject, a, b, _max_pool(*t.geometry), token_fc=fc),
    "conv": lambda a, b, t, fc: Call(ConvEmbed, a, b, stride=t.stride, token_fc=fc),
}
KV_REDUCTIONS = {  # (width, kernel, stride, padding)
    "dwconv": lambda dim, k, s, p: Call(nn.Conv2d, dim, dim, k, stride=s, padding=p, groups=dim),
    "avg": lambda dim, k, s, p: _avg_pool(k, s, p),
    "max": lambda dim, k, s, p: _max_pool(k, s, p),
}


def _lookup(table: dict[str, Callable[..., Call]], kind: str, what: str) -> Callable[..., Call]:
    if kind not in table:
        raise KeyError(f"unknown {what} {kind!r}; choose from {sorted(table)}")
    return table[kind]


def _attention(s: StageConfig, num_tokens: int, norm_eps: float) -> Call:
    if s.sr_ratio == 1 and not s.head_interaction:
        return Call(Attention, s.dim, heads=s.heads, qkv_bias=s.qkv_bias)
    reduced = {}
    if s.sr_ratio > 1:
        reduce = _lookup(KV_REDUCTIONS, s.sr_kind, "key/value reduction")
        reduced = {
            "kv_reduction": reduce(s.dim, *s.sr_geometry),
            "num_tokens": num_tokens,
            "norm_eps": norm_eps,
        }
    return Call(
        EfficientAttention,
        s.dim,
        heads=s.heads,
        head_interaction=s.head_interaction,
        qkv_bias=s.qkv_bias,
        **reduced,
    )


def _block(s: StageConfig, attention: Call, norm_eps: float, drop_path: float | Var) -> Call:
    return Call(
        Block, s.dim, attention, mlp_hidden=s.mlp_hidden, drop_path=drop_path, norm_eps=norm_eps
    )


def model_call(
    cfg: ArchConfig, num_classes: int = 1000, img_size: int | tuple[int, int] = 224
) -> Call:
    """The constructor calls that build ``cfg``'s model (see `build_model`), as data.

    Raises:
        ArchError: if a token grid collapses at ``img_size``.
    """
    grids = cfg.grids(img_size)  # validates the geometry before any layer is made
    rates = drop_path_rates(cfg.drop_path_rate, cfg.depth)
    t = cfg.head.num_tokens
    stages, start = [], 0
    for i, s in enumerate(cfg.stages):
        parts = {}
        if i > 0:  # built first: the order in which layers draw their initial weights
            tr = cfg.transitions[i - 1]
            transition = _lookup(TRANSITIONS, tr.kind, "transition")
            parts["downsample"] = transition(cfg.stages[i - 1].dim, s.dim, tr, t > 0)
        pos = _lookup(POS_ENCODINGS, s.pos, "positional encoding")
        parts["pos"] = pos(s.dim, Var(f"sides[{i}]", grids[i]))
        block = partial(_block, s, _attention(s, t, cfg.norm_eps), cfg.norm_eps)
        stop = start + s.depth  # one block per drop-path rate
        parts["blocks"] = Each("p", Var(f"dpr[{start}:{stop}]", rates[start:stop]), block)
        stages.append(Call(Stage, **parts))
        start = stop
    stem = _lookup(STEMS, cfg.stem.kind, "stem")
    return Call(
        HViT,
        stem=stem(cfg.stem, Var("in_chans", cfg.in_chans), cfg.stages[0].dim),
        stages=stages,
        embed_dim=cfg.stages[0].dim,
        num_features=cfg.stages[-1].dim,
        num_classes=Var("num_classes", num_classes),
        num_tokens=t,
        norm_eps=cfg.norm_eps,
    )


def build_model(
    cfg: ArchConfig, num_classes: int = 1000, img_size: int | tuple[int, int] = 224
) -> HViT:
    """Build the model described by ``cfg`` for inputs of ``img_size`` pixels.

    ``img_size`` sizes the learned position map (if any) and is checked against the
    architecture: a grid that would collapse below 1x1 is an `ArchError` here, not a shape
    error deep inside ``forward``. The model still runs at other sizes (the position map is
    resized), as long as the grids stay valid. The model keeps ``cfg`` as ``model.cfg``.
    """
    if not isinstance(cfg, ArchConfig):
        raise TypeError(f"build_model takes an ArchConfig, got {type(cfg).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    model = build(model_call(cfg, num_classes=num_classes, img_size=img_size))
    model.cfg = cfg
    return model
