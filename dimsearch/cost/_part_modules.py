"""Runnable modules for `Part`s, built from the same layers the generator assembles.

Each part becomes a small module and an input batch of the shape it sees inside the model, so
timing it alone times the code the model runs: the stem, transition, positional encoding and
`Block` come from `dimsearch.layers` through the same factories `dimsearch.models.hvit` uses;
the few tensor reshapes between them repeat `HViT`'s glue line for line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dimsearch.cost._parts import Part
from dimsearch.layers import Block, create_pos, create_stem, create_transition

__all__ = ["build_part"]


class _Stem(nn.Module):
    def __init__(self, p: Part) -> None:
        super().__init__()
        patch = {k: p.get(k) for k in ("patch_size", "stride", "padding") if k in dict(p.fields)}
        self.stem = create_stem(p.get("kind"), p.get("in_chans"), p.get("dim"), **patch)
        t = p.get("tokens")
        self.cls_token = nn.Parameter(torch.zeros(1, t, p.get("dim"))) if t else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.stem(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1) if self.cls_token is not None else None
        return x, cls


class _Transition(nn.Module):
    def __init__(self, p: Part) -> None:
        super().__init__()
        self.t, self.grid = p.get("tokens"), p.get("grid")
        self.down = create_transition(
            p.get("kind"), p.get("dim_in"), p.get("dim"), p.get("stride"), self.t
        )

    def forward(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self.t
        cls = seq[:, :t] if t else None
        x = seq[:, t:].transpose(1, 2).reshape(seq.shape[0], -1, *self.grid)
        return self.down(x, cls)


class _Entry(nn.Module):
    def __init__(self, p: Part) -> None:
        super().__init__()
        self.pos = create_pos(p.get("pos"), p.get("dim"), p.get("grid"))

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        x = self.pos(x).flatten(2).transpose(1, 2)
        return torch.cat((cls, x), dim=1) if cls is not None else x


def _block(p: Part, mlp_hidden: int) -> Block:
    fields = dict(p.fields)
    return Block(
        fields["dim"],
        fields.get("heads", 1),
        mlp_hidden,
        qkv_bias=fields.get("qkv_bias", True),
        num_tokens=fields.get("tokens", 0),
        sr_ratio=fields.get("sr", 1),
        sr_kind=fields.get("sr_kind", "dwconv"),
        head_interaction=fields.get("mix", False),
    )


class _Attn(nn.Module):
    """The first residual half of a real `Block` (its MLP is built but never run)."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        self.block = _block(p, 1)
        self.grid = p.get("grid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        return x + b.drop_path(b.attn(b.norm1(x), self.grid))


class _Mlp(nn.Module):
    """The second residual half of a real `Block`."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        self.block = _block(p, p.get("hidden"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        return x + b.drop_path(b.mlp(b.norm2(x)))


class _Head(nn.Module):
    """`HViT.forward_features`' tail and `HViT.forward_head` in eval mode."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        dim, classes = p.get("dim"), p.get("classes")
        self.t = p.get("tokens")
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes) if classes > 0 else nn.Identity()
        self.head_dist = None
        if p.get("distilled"):
            self.head_dist = nn.Linear(dim, classes) if classes > 0 else nn.Identity()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        t = self.t
        if not t:
            return self.head(self.norm(seq).mean(dim=1))
        x = self.norm(seq[:, :t])
        if self.head_dist is None:
            return self.head(x[:, 0])
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


def _inputs(p: Part, batch: int) -> tuple[Any, ...]:
    """Random inputs of the shapes ``p`` sees inside the model."""
    t = p.get("tokens") if "tokens" in dict(p.fields) else 0
    if p.kind == "stem":
        return (torch.randn(batch, p.get("in_chans"), *p.get("img")),)
    if p.kind == "transition":
        h, w = p.get("grid")
        return (torch.randn(batch, t + h * w, p.get("dim_in")),)
    if p.kind == "entry":
        cls = torch.randn(batch, t, p.get("dim")) if t else None
        return torch.randn(batch, p.get("dim"), *p.get("grid")), cls
    if p.kind == "attn":
        h, w = p.get("grid")
        return (torch.randn(batch, t + h * w, p.get("dim")),)
    return (torch.randn(batch, p.get("seq"), p.get("dim")),)  # mlp, head


_MODULES: dict[str, type[nn.Module]] = {
    "stem": _Stem,
    "transition": _Transition,
    "entry": _Entry,
    "attn": _Attn,
    "mlp": _Mlp,
    "head": _Head,
}


def build_part(p: Part, batch: int, device: torch.device) -> Callable[[], Any]:
    """A zero-argument call that runs ``p`` once on a batch of ``batch`` on ``device``.

    The module is in eval mode with the generator's initialisation left at PyTorch defaults
    (values do not change the time of dense kernels).
    """
    module = _MODULES[p.kind](p).to(device).eval()
    inputs = tuple(x.to(device) if x is not None else None for x in _inputs(p, batch))
    return lambda: module(*inputs)
