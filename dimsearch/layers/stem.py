"""Stems: pixels to the first token grid (B, C, H, W)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Conv3Stem", "Conv7Stem", "PatchStem"]


class PatchStem(nn.Module):
    """PiT's overlapping patch embedding: a single strided conv with bias."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, patch_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Conv3Stem(nn.Module):
    """ResT's released stem: three 3x3 convs (strides 2-1-2), hidden width C/2, BN+ReLU after
    the first two and nothing after the third (its positional encoding follows)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        hidden = dim // 2
        self.conv1 = nn.Conv2d(in_chans, hidden, 3, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, dim, 3, stride=2, padding=1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.conv3(x)


class Conv7Stem(nn.Module):
    """The ResNet-style stem the ResT paper measured with: 7x7/2 conv, BN, ReLU, 3x3/2 max pool."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, 7, stride=2, padding=3, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))
