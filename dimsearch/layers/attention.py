"""Multi-head self-attention over ``[class tokens, grid tokens]``, in two classes.

* `Attention` (PiT): one fused ``qkv`` Linear and PyTorch's scaled-dot-product attention,
  which dispatches to flash / memory-efficient kernels on GPU.
* `EfficientAttention`: ResT's EMSA, whose two additions are each optional: keys/values from
  a reduced grid, and head interaction. A stage with neither uses `Attention`.

Both take the stage's grid size, which the key/value reduction needs to fold the tokens back
into an image, so a block calls either the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "EfficientAttention"]


class Attention(nn.Module):
    """Full multi-head self-attention (PiT's): one fused ``qkv`` projection, and PyTorch's
    scaled-dot-product attention over all tokens. ``grid`` is not needed here; it is taken so
    that a block calls every attention the same way."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class EfficientAttention(nn.Module):
    """ResT's efficient multi-head self-attention (EMSA).

    * ``kv_reduction`` (a strided depthwise conv or pooling module): queries come from every
      token, keys and values from the grid reduced by it, then a LayerNorm; the
      ``num_tokens`` class tokens join the reduced grid unreduced. Without it: one fused
      ``qkv`` projection over all tokens.
    * ``head_interaction``: a 1x1 conv mixes the heads' attention logits before the softmax
      and an instance norm follows it. Those two steps sit between the matmuls, so this path
      computes attention explicitly; without it, PyTorch's scaled-dot-product attention.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_reduction: nn.Module | None = None,
        head_interaction: bool = False,
        qkv_bias: bool = True,
        num_tokens: int = 0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.num_tokens = num_tokens
        if kv_reduction is None:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.sr = None
        else:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
            self.sr = kv_reduction
            self.sr_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.transform_conv = None
        if head_interaction:
            self.transform_conv = nn.Conv2d(heads, heads, 1)
            self.transform_norm = nn.InstanceNorm2d(heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        h, d = self.heads, self.head_dim
        if self.sr is None:
            q, k, v = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = self.q(x).reshape(B, N, h, d).transpose(1, 2)
            t = self.num_tokens
            spatial = x[:, t:].transpose(1, 2).reshape(B, C, *grid)
            kv = self.sr(spatial).flatten(2).transpose(1, 2)
            if t:
                kv = torch.cat((x[:, :t], kv), dim=1)
            kv = self.kv(self.sr_norm(kv))
            k, v = kv.reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        if self.transform_conv is None:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            x = self.transform_norm(self.transform_conv(attn).softmax(dim=-1)) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))
