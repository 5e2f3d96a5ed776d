"""Positional encodings applied to a token grid (B, C, H, W).

* `LearnedPos`: a learned map added to the grid (PiT); resized bicubically when the input
  resolution differs from the one it was built for, so a model runs at any size.
* `GroupLinearPos`: ``x + dwconv3x3(x)`` (the official ResT code's GL).
* `PixelAttentionPos`: ``x * sigmoid(dwconv3x3(x))`` (ResT's PA).

No encoding at all is an ``nn.Identity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GroupLinearPos", "LearnedPos", "PixelAttentionPos"]


class LearnedPos(nn.Module):
    """A learned (1, C, H, W) map added to the grid; trunc-normal(0.02) init as in PiT.

    ``grid`` is the (H, W) the map is made for; other grid sizes get it resized bicubically.
    """

    def __init__(self, dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.pos_embed
        if pos.shape[-2:] != x.shape[-2:]:
            pos = F.interpolate(pos, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return x + pos


class GroupLinearPos(nn.Module):
    """ResT's GL: a depthwise 3x3 conv added back to its input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class PixelAttentionPos(nn.Module):
    """ResT's PA: each pixel gated by a sigmoid of a depthwise 3x3 conv of its neighbourhood."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))
