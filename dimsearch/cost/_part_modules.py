"""Runnable modules for `Part`s, built through the same calls the generator builds a model with.

Each part becomes a small module and an input batch of the shape it sees inside the model, so
timing it alone times the code the model runs: the layers come from `dimsearch.models.hvit`'s
tables (``STEMS``, ``TRANSITIONS``, ``POS_ENCODINGS``, the attention and block calls) fed the
configs the part's key describes, and are made by the same `build`. A stage entry is a real
`Stage` without blocks and the head a real `HViT`'s norm and classifier; the few tensor
reshapes `HViT` does between its parts are repeated here line for line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dimsearch.config import StageConfig, StemConfig, TransitionConfig
from dimsearch.cost._parts import Part
from dimsearch.layers import Stage
from dimsearch.models._call import Call, build
from dimsearch.models.hvit import (
    POS_ENCODINGS,
    STEMS,
    TRANSITIONS,
    HViT,
    _attention,
)
from dimsearch.models.hvit import _block as _block_call

__all__ = ["build_part"]

# LayerNorm's epsilon is not in a part's key: it does not change the work a norm does.
_NORM_EPS = 1e-6


class _Stem(nn.Module):
    """The stem, then `HViT.forward_features`' class-token expansion."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        fields = dict(p.fields)
        geometry = {k: fields[k] for k in ("patch_size", "stride", "padding") if k in fields}
        cfg = StemConfig(kind=p.get("kind"), **geometry)
        self.stem = build(STEMS[cfg.kind](cfg, p.get("in_chans"), p.get("dim")))
        t = p.get("tokens")
        self.cls_token = nn.Parameter(torch.zeros(1, t, p.get("dim"))) if t else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.stem(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1) if self.cls_token is not None else None
        return x, cls


class _Transition(nn.Module):
    """`HViT.forward_features`' split of a stage's sequence into class tokens and a grid, then
    the next stage's downsampling."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        self.t, self.grid = p.get("tokens"), p.get("grid")
        cfg = TransitionConfig(kind=p.get("kind"), stride=p.get("stride"))
        call = TRANSITIONS[cfg.kind](p.get("dim_in"), p.get("dim"), cfg, self.t > 0)
        self.down = build(call)

    def forward(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self.t
        cls = seq[:, :t] if t else None
        x = seq[:, t:].transpose(1, 2).reshape(seq.shape[0], -1, *self.grid)
        return self.down(x, cls)


def _entry(p: Part) -> nn.Module:
    """A `Stage` without downsampling or blocks: its positional encoding and token join."""
    pos = POS_ENCODINGS[p.get("pos")](p.get("dim"), p.get("grid"))
    return build(Call(Stage, pos=pos, blocks=[]))


def _mlp_ratio(dim: int, hidden: int) -> float:
    """A ratio whose ``int(dim * ratio)`` is ``hidden`` (``hidden / dim`` can fall 1 ulp short)."""
    ratio = hidden / dim
    while int(dim * ratio) < hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _real_block(p: Part, hidden: int | None = None) -> nn.Module:
    """A real `Block`, made by the generator's attention and block calls for the stage the
    part's key describes (``hidden`` None: the default MLP, which the attention half never
    runs)."""
    fields = dict(p.fields)
    dim = fields["dim"]
    stage = StageConfig(
        depth=1,
        dim=dim,
        heads=fields.get("heads", 1),
        mlp_ratio=_mlp_ratio(dim, hidden) if hidden is not None else 4.0,
        qkv_bias=fields.get("qkv_bias", True),
        sr_ratio=fields.get("sr", 1),
        sr_kind=fields.get("sr_kind", "dwconv"),
        head_interaction=fields.get("mix", False),
    )
    attention = _attention(stage, fields.get("tokens", 0), _NORM_EPS)
    return build(_block_call(stage, attention, _NORM_EPS, 0.0))


class _Attn(nn.Module):
    """The first residual half of a real `Block` (`Block.forward`'s first line)."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        self.block = _real_block(p)
        self.grid = p.get("grid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        return x + b.drop_path(b.attn(b.norm1(x), self.grid))


class _Mlp(nn.Module):
    """The second residual half of a real `Block` (`Block.forward`'s second line)."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        self.block = _real_block(p, p.get("hidden"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        return x + b.drop_path(b.mlp(b.norm2(x)))


class _Head(nn.Module):
    """`HViT.forward_features`' tail (final norm, pooling) and `HViT.forward_head` in eval mode,
    on a real `HViT` that has no stem or stages."""

    def __init__(self, p: Part) -> None:
        super().__init__()
        dim = p.get("dim")
        self.t = p.get("tokens")
        self.model = build(
            Call(
                HViT,
                stem=Call(nn.Identity),
                stages=[],
                embed_dim=dim,
                num_features=dim,
                num_classes=p.get("classes"),
                num_tokens=self.t,
                norm_eps=_NORM_EPS,
            )
        )

    def forward(self, seq: torch.Tensor) -> Any:
        m, t = self.model, self.t
        x = m.norm(seq[:, :t]) if t else m.norm(seq).mean(dim=1)
        return m.forward_head(x)


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


_MODULES: dict[str, Callable[[Part], nn.Module]] = {
    "stem": _Stem,
    "transition": _Transition,
    "entry": _entry,
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
