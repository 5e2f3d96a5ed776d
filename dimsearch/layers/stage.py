"""A stage: downsampling, positional encoding and transformer blocks on one token grid."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Stage"]


class Stage(nn.Module):
    """Transition (``downsample``; none in stage 1), positional encoding, then the blocks.

    Between stages the features are a grid (B, C, H, W) plus class tokens (B, T, C), or
    ``None`` for a model without them; inside a stage they are one sequence
    ``[class tokens, grid tokens]`` of shape (B, T + H*W, C).
    """

    def __init__(
        self, pos: nn.Module, blocks: list[nn.Module], downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.pos = pos
        self.blocks = nn.ModuleList(blocks)

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
