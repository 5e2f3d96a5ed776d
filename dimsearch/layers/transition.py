"""Downsampling between stages: grid (B, C_in, H, W) + class tokens -> the next stage's.

Every kind uses kernel ``stride+1``, stride ``stride``, padding ``stride//2`` (PiT's and ResT's
geometry, H -> ceil(H/2) for stride 2). Class tokens have no grid, so they are widened by a
Linear, as in PiT. Table: `TRANSITIONS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["TRANSITIONS", "ConvEmbed", "DWConvPool", "PoolProject", "create_transition"]


class _Transition(nn.Module, ABC):
    """Shared part: the class-token Linear (absent when the model has no class tokens)."""

    def __init__(self, dim_in: int, dim_out: int, num_tokens: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim_in, dim_out) if num_tokens else None

    @abstractmethod
    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample the (B, C_in, H, W) grid to (B, C_out, H', W')."""

    def forward(
        self, x: torch.Tensor, cls: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.fc is not None and cls is not None:
            cls = self.fc(cls)
        return self.grid_op(x), cls


class DWConvPool(_Transition):
    """PiT's pooling: depthwise conv with channel multiplier ``dim_out / dim_in``."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, num_tokens: int) -> None:
        super().__init__(dim_in, dim_out, num_tokens)
        self.conv = nn.Conv2d(
            dim_in, dim_out, stride + 1, stride=stride, padding=stride // 2, groups=dim_in
        )

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PoolProject(_Transition):
    """Parameter-free pooling (``avg`` or ``max``) then a 1x1 conv to the new width."""

    def __init__(
        self, dim_in: int, dim_out: int, stride: int, num_tokens: int, mode: str = "avg"
    ) -> None:
        super().__init__(dim_in, dim_out, num_tokens)
        k, p = stride + 1, stride // 2
        self.pool = (
            nn.AvgPool2d(k, stride, p, count_include_pad=False)
            if mode == "avg"
            else nn.MaxPool2d(k, stride, p)
        )
        self.proj = nn.Conv2d(dim_in, dim_out, 1)

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class ConvEmbed(_Transition):
    """ResT's patch embedding: dense conv then BatchNorm."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, num_tokens: int) -> None:
        super().__init__(dim_in, dim_out, num_tokens)
        self.conv = nn.Conv2d(dim_in, dim_out, stride + 1, stride=stride, padding=stride // 2)
        self.norm = nn.BatchNorm2d(dim_out)

    def grid_op(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def _avg(dim_in: int, dim_out: int, stride: int, num_tokens: int) -> PoolProject:
    return PoolProject(dim_in, dim_out, stride, num_tokens, mode="avg")


def _max(dim_in: int, dim_out: int, stride: int, num_tokens: int) -> PoolProject:
    return PoolProject(dim_in, dim_out, stride, num_tokens, mode="max")


TRANSITIONS = {"dwconv": DWConvPool, "avg": _avg, "max": _max, "conv": ConvEmbed}


def create_transition(
    kind: str, dim_in: int, dim_out: int, stride: int, num_tokens: int
) -> nn.Module:
    """Build the transition named ``kind``."""
    if kind not in TRANSITIONS:
        raise KeyError(f"unknown transition {kind!r}; choose from {sorted(TRANSITIONS)}")
    return TRANSITIONS[kind](dim_in, dim_out, stride, num_tokens)
