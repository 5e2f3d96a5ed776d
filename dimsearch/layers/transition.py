"""Downsampling between stages: grid (B, C_in, H, W) + class tokens -> the next stage's.

`DWConvPool` and `ConvEmbed` use kernel ``stride+1``, stride ``stride``, padding ``stride//2``
(PiT's and ResT's geometry, H -> ceil(H/2) for stride 2); `PoolProject` takes its pooling
module, built with the same geometry. Class tokens have no grid, so they are widened by a
Linear, as in PiT.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvEmbed", "DWConvPool", "PoolProject", "Transition"]


class Transition(nn.Module):
    """What every transition shares: ``grid_op`` (set by each kind) downsamples the grid and
    ``fc`` widens the class tokens (``token_fc=False`` leaves it out, for a model without
    class tokens)."""

    def __init__(self, dim_in: int, dim_out: int, token_fc: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(dim_in, dim_out) if token_fc else None

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample the (B, C_in, H, W) grid to (B, C_out, H', W')."""
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, cls: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.fc is not None and cls is not None:
            cls = self.fc(cls)
        return self.grid_op(x), cls


class DWConvPool(Transition):
    """PiT's pooling: depthwise conv with channel multiplier ``dim_out / dim_in``."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, token_fc: bool = True) -> None:
        super().__init__(dim_in, dim_out, token_fc)
        self.conv = nn.Conv2d(
            dim_in, dim_out, stride + 1, stride=stride, padding=stride // 2, groups=dim_in
        )

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PoolProject(Transition):
    """Parameter-free pooling (the ``pool`` module: average or max) then a 1x1 conv to the
    new width."""

    def __init__(self, dim_in: int, dim_out: int, pool: nn.Module, token_fc: bool = True) -> None:
        super().__init__(dim_in, dim_out, token_fc)
        self.pool = pool
        self.proj = nn.Conv2d(dim_in, dim_out, 1)

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class ConvEmbed(Transition):
    """ResT's patch embedding: dense conv then BatchNorm."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, token_fc: bool = True) -> None:
        super().__init__(dim_in, dim_out, token_fc)
        self.conv = nn.Conv2d(dim_in, dim_out, stride + 1, stride=stride, padding=stride // 2)
        self.norm = nn.BatchNorm2d(dim_out)

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))
