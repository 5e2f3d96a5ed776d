"""The pre-norm transformer block shared by every stage, with its MLP and stochastic depth."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Block", "DropPath", "Mlp", "drop_path_rates"]


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth of each of ``depth`` blocks: linear from 0 to ``rate``, as in timm."""
    return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


class DropPath(nn.Module):
    """Stochastic depth: while training, each sample's residual branch is dropped with
    probability ``p`` (in [0, 1)) and kept ones are scaled by ``1 / (1 - p)``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class Mlp(nn.Module):
    """The feed-forward half of a block: Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """``x + drop_path(attn(norm1(x)))`` then ``x + drop_path(mlp(norm2(x)))``.

    ``attn`` is given ready-made (full or efficient attention) and called with the stage's
    grid size along with the tokens.
    """

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        mlp_hidden: int,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))
