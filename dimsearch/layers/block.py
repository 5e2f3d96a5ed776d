"""The pre-norm transformer block shared by every stage (timm's ViT block, grid-aware)."""

from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from dimsearch.layers.attention import Attention

__all__ = ["Block"]


class Block(nn.Module):
    """``x + drop_path(attn(norm1(x)))`` then ``x + drop_path(mlp(norm2(x)))``.

    The block takes the stage's grid size because attention with key/value reduction needs to
    fold the tokens back into an image; the attention kwargs are passed through unchanged.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_hidden: int,
        norm_eps: float = 1e-6,
        drop_path: float = 0.0,
        proj_drop: float = 0.0,
        **attn_kwargs: object,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, norm_eps=norm_eps, proj_drop=proj_drop, **attn_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, act_layer=nn.GELU, drop=proj_drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))
