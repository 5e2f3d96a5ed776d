"""Parameter count of a built model."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["count_params"]


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable or frozen; shared tensors count once, buffers never.

    Buffers (BatchNorm running statistics) are state, not weights, which is how papers and
    timm report model size.
    """
    return sum(p.numel() for p in model.parameters())
