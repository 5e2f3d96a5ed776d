"""Multi-head self-attention with optional key/value spatial reduction and head interaction.

One module covers both families:

* full attention (PiT): one fused ``qkv`` Linear and PyTorch's scaled-dot-product attention,
  which dispatches to flash / memory-efficient kernels on GPU;
* ResT's EMSA: queries from every token, keys/values from the grid reduced by a
  ``KV_REDUCTIONS`` op + LayerNorm (class tokens, if any, join the reduced grid unreduced);
  with ``head_interaction`` a 1x1 conv mixes the heads' logits before softmax and an instance
  norm follows it. Those two steps sit between the matmuls, so that path computes attention
  explicitly; everything else goes through SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KV_REDUCTIONS", "Attention", "create_kv_reduction"]


def _dwconv(dim: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return nn.Conv2d(dim, dim, kernel, stride=stride, padding=padding, groups=dim)


def _avg(dim: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return nn.AvgPool2d(kernel, stride=stride, padding=padding, count_include_pad=False)


def _max(dim: int, kernel: int, stride: int, padding: int) -> nn.Module:
    return nn.MaxPool2d(kernel, stride=stride, padding=padding)


KV_REDUCTIONS = {"dwconv": _dwconv, "avg": _avg, "max": _max}


def create_kv_reduction(kind: str, dim: int, kernel: int, stride: int, padding: int) -> nn.Module:
    """Build the key/value grid reduction named ``kind``."""
    if kind not in KV_REDUCTIONS:
        raise KeyError(f"unknown key/value reduction {kind!r}; choose from {sorted(KV_REDUCTIONS)}")
    return KV_REDUCTIONS[kind](dim, kernel, stride, padding)


class Attention(nn.Module):
    """Self-attention over ``[class tokens, grid tokens]``.

    Args:
        dim: token width.
        heads: number of heads.
        qkv_bias: bias on the q/k/v projections.
        num_tokens: leading class tokens in the sequence (kept out of the spatial reduction).
        sr_ratio: key/value reduction factor; 1 means full attention with a fused ``qkv``.
        sr_kind: ``KV_REDUCTIONS`` key.
        head_interaction: ResT's conv-over-heads + instance norm (needs heads > 1).
        norm_eps: epsilon of the LayerNorm after the reduction.
        attn_drop, proj_drop: dropout rates.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        qkv_bias: bool = True,
        num_tokens: int = 0,
        sr_ratio: int = 1,
        sr_kind: str = "dwconv",
        head_interaction: bool = False,
        norm_eps: float = 1e-6,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.num_tokens = num_tokens
        self.sr_ratio = sr_ratio
        self.attn_drop = attn_drop
        if sr_ratio == 1:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        else:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
            self.sr = create_kv_reduction(sr_kind, dim, sr_ratio + 1, sr_ratio, sr_ratio // 2)
            self.sr_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.transform_conv: nn.Module | None = None
        if head_interaction:
            self.transform_conv = nn.Conv2d(heads, heads, 1)
            self.transform_norm = nn.InstanceNorm2d(heads)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        B, N, C = x.shape
        h, d = self.heads, self.head_dim
        if self.sr_ratio == 1:
            return self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.q(x).reshape(B, N, h, d).transpose(1, 2)
        t = self.num_tokens
        spatial = x[:, t:].transpose(1, 2).reshape(B, C, *grid)
        kv_in = self.sr(spatial).flatten(2).transpose(1, 2)
        if t:
            kv_in = torch.cat((x[:, :t], kv_in), dim=1)
        kv_in = self.sr_norm(kv_in)
        k, v = self.kv(kv_in).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self._qkv(x, grid)
        drop = self.attn_drop if self.training else 0.0
        if self.transform_conv is None:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = self.transform_norm(self.transform_conv(attn).softmax(dim=-1))
            x = F.dropout(attn, drop) @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))
