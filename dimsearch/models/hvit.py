"""The hierarchical vision transformer generator: one `ArchConfig` in, one `nn.Module` out.

Papers whose models are exact points of this family:

* PiT — Heo et al., "Rethinking Spatial Dimensions of Vision Transformers", ICCV 2021
  (patch stem, learned position map, class tokens, depthwise-conv pooling).
* ResT — Zhang & Yang, "ResT: An Efficient Transformer for Visual Recognition", NeurIPS 2021
  (conv stem, pixel-attention positions, key/value reduction, head interaction, conv patch
  embedding between stages, average-pooled head).

Data layout: between stages the features are a grid (B, C, H, W) plus class tokens (B, T, C);
inside a stage they are one sequence ``[class tokens, grid tokens]`` of shape (B, T + H*W, C).
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from dimsearch.config import ArchConfig, StageConfig
from dimsearch.layers import Block, create_pos, create_stem, create_transition

__all__ = ["HViT", "Stage", "build_model"]


class Stage(nn.Module):
    """Transition (except in stage 1), positional encoding, then the blocks."""

    def __init__(
        self,
        cfg: StageConfig,
        grid: tuple[int, int],
        downsample: nn.Module | None,
        num_tokens: int,
        norm_eps: float,
        drop_path: list[float],
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.pos = create_pos(cfg.pos, cfg.dim, grid)
        self.num_tokens = num_tokens
        self.blocks = nn.ModuleList(
            Block(
                cfg.dim,
                cfg.heads,
                cfg.mlp_hidden,
                norm_eps=norm_eps,
                drop_path=dp,
                qkv_bias=cfg.qkv_bias,
                num_tokens=num_tokens,
                sr_ratio=cfg.sr_ratio,
                sr_kind=cfg.sr_kind,
                head_interaction=cfg.head_interaction,
            )
            for dp in drop_path
        )

    def forward(
        self, x: torch.Tensor, cls: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Grid + class tokens in; the stage's token sequence and its grid size out."""
        if self.downsample is not None:
            x, cls = self.downsample(x, cls)
        x = self.pos(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        if cls is not None:
            x = torch.cat((cls, x), dim=1)
        for block in self.blocks:
            x = block(x, grid)
        return x, grid


class HViT(nn.Module):
    """A hierarchical vision transformer built from an :class:`ArchConfig`.

    Use :func:`build_model` rather than the constructor directly. ``forward`` returns logits;
    a distilled model returns the mean of its two heads unless ``distilled_training`` is set
    and the model is training, in which case it returns both (as timm's PiT does).
    """

    def __init__(
        self, cfg: ArchConfig, num_classes: int = 1000, img_size: int | tuple[int, int] = 224
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.img_size = img_size
        grids = cfg.grids(img_size)  # validates the geometry before any layer is made
        t = cfg.head.num_tokens
        self.num_tokens = t
        first = cfg.stages[0]
        stem = cfg.stem
        self.stem = create_stem(
            stem.kind,
            cfg.in_chans,
            first.dim,
            patch_size=stem.patch_size,
            stride=stem.stride,
            padding=stem.padding,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, t, first.dim)) if t else None

        # stochastic depth grows linearly over all blocks (torch.linspace(0, rate, depth))
        n = cfg.depth
        rates = [cfg.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        stages, start, prev = [], 0, None
        for i, (scfg, grid) in enumerate(zip(cfg.stages, grids, strict=True)):
            down = None
            if i > 0:
                tr = cfg.transitions[i - 1]
                down = create_transition(tr.kind, prev.dim, scfg.dim, tr.stride, t)
            dp = rates[start : start + scfg.depth]
            stages.append(Stage(scfg, grid, down, t, cfg.norm_eps, dp))
            start, prev = start + scfg.depth, scfg
        self.stages = nn.ModuleList(stages)

        width = cfg.stages[-1].dim
        self.num_features = width
        self.norm = nn.LayerNorm(width, eps=cfg.norm_eps)
        self.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = None
        if cfg.head.distilled:
            self.head_dist = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        self.distilled_training = False
        self.apply(_init_weights)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    # timm ViT habit: truncated-normal Linear weights, zero biases, unit norms; convs keep
    # PyTorch's default init (as PiT does). Any of these is replaced when weights are loaded.
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_model(
    cfg: ArchConfig, num_classes: int = 1000, img_size: int | tuple[int, int] = 224
) -> HViT:
    """Build the model described by ``cfg`` for inputs of ``img_size`` pixels.

    ``img_size`` sizes the learned position map (if any) and is checked against the
    architecture: a grid that would collapse below 1x1 is an `ArchError` here, not a shape
    error deep inside ``forward``. The model still runs at other sizes (the position map is
    resized), as long as the grids stay valid.
    """
    if not isinstance(cfg, ArchConfig):
        raise TypeError(f"build_model takes an ArchConfig, got {type(cfg).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    return HViT(cfg, num_classes=num_classes, img_size=img_size)
