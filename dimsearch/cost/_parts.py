"""The building blocks an `ArchConfig` runs as, each keyed by its exact shape (torch-free).

A latency predictor in the nn-Meter manner times each distinct block once and sums. So the
unit is what the model executes as one piece at one shape:

* ``stem``: the stem at the input size, plus the class-token expansion;
* ``transition``: between stages, the split of the previous stage's sequence into grid and
  class tokens, then the downsampling op (and the class-token Linear);
* ``entry``: a stage's positional encoding on its grid, then flattening the grid and joining
  the class tokens: what runs before the first block (``pos: none`` included: the glue stays);
* ``attn``: ``x + attn(norm1(x))`` at its token grid, width, heads, key/value reduction
  (ratio and kind) and head interaction;
* ``mlp``: ``x + mlp(norm2(x))`` at its token count, width and hidden width;
* ``head``: the final norm, pooling and classifier(s).

Two configs share a part exactly when the part's key is equal, so a space's many sampled
architectures reduce to a few hundred keys. The batch size is not in a key: a table of timings
holds one batch size (and one device, precision, ...) throughout.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dimsearch.config import ArchConfig

__all__ = ["PART_KINDS", "Part", "decompose", "distinct_parts"]

PART_KINDS = ("stem", "transition", "entry", "attn", "mlp", "head")


@dataclass(frozen=True, order=True)
class Part:
    """One building block at one shape: its ``kind`` and the fields that fix its shape.

    ``key`` is a stable text form (``attn:{"dim":64,...}``) used in tables and JSON files;
    `from_key` reads it back.
    """

    kind: str
    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, kind: str, /, **fields: Any) -> Part:
        if kind not in PART_KINDS:
            raise ValueError(f"part kind must be one of {list(PART_KINDS)}, got {kind!r}")
        return cls(kind, tuple(sorted((k, _freeze(v)) for k, v in fields.items())))

    @property
    def key(self) -> str:
        body = json.dumps(dict(self.fields), sort_keys=True, separators=(",", ":"))
        return f"{self.kind}:{body}"

    @classmethod
    def from_key(cls, key: str) -> Part:
        kind, sep, body = key.partition(":")
        if not sep:
            raise ValueError(f"a part key is 'kind:{{json}}', got {key!r}")
        return cls.make(kind, **json.loads(body))

    def get(self, name: str) -> Any:
        return dict(self.fields)[name]

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.fields)
        return f"{self.kind}({inner})"


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def decompose(cfg: ArchConfig, img_size: int, num_classes: int = 1000) -> Counter[Part]:
    """The parts ``cfg`` runs as at ``img_size`` with ``num_classes`` outputs, with counts.

    The sum of the counts is the number of pieces the predictor adds up: 2 (stem, head) +
    one transition per gap + one entry per stage + 2 per block.

    Raises:
        ArchError: the architecture's grids collapse at ``img_size``.
    """
    grids = cfg.grids(img_size)
    t = cfg.head.num_tokens
    stem = cfg.stem
    geometry = (
        {"patch_size": stem.patch_size, "stride": stem.stride, "padding": stem.padding}
        if stem.kind == "patch"
        else {}
    )
    parts: Counter[Part] = Counter()
    parts[
        Part.make(
            "stem",
            kind=stem.kind,
            in_chans=cfg.in_chans,
            dim=cfg.stages[0].dim,
            img=(img_size, img_size),
            tokens=t,
            **geometry,
        )
    ] += 1
    for i, (stage, grid) in enumerate(zip(cfg.stages, grids, strict=True)):
        if i > 0:
            prev, tr = cfg.stages[i - 1], cfg.transitions[i - 1]
            parts[
                Part.make(
                    "transition",
                    kind=tr.kind,
                    dim_in=prev.dim,
                    dim=stage.dim,
                    stride=tr.stride,
                    grid=grids[i - 1],
                    tokens=t,
                )
            ] += 1
        parts[Part.make("entry", pos=stage.pos, dim=stage.dim, grid=grid, tokens=t)] += 1
        reduction = {"sr_kind": stage.sr_kind} if stage.sr_ratio > 1 else {}
        attn = Part.make(
            "attn",
            dim=stage.dim,
            heads=stage.heads,
            grid=grid,
            tokens=t,
            qkv_bias=stage.qkv_bias,
            sr=stage.sr_ratio,
            mix=stage.head_interaction,
            **reduction,
        )
        mlp = Part.make("mlp", dim=stage.dim, hidden=stage.mlp_hidden, seq=t + grid[0] * grid[1])
        parts[attn] += stage.depth
        parts[mlp] += stage.depth
    last, grid = cfg.stages[-1], grids[-1]
    parts[
        Part.make(
            "head",
            pool=cfg.head.pool,
            distilled=cfg.head.distilled,
            dim=last.dim,
            seq=t + grid[0] * grid[1],
            tokens=t,
            classes=num_classes,
        )
    ] += 1
    return parts


def distinct_parts(
    cfgs: Iterable[ArchConfig], img_size: int, num_classes: int = 1000
) -> dict[Part, int]:
    """Every distinct part of ``cfgs``, with how many of the configs use it."""
    used: Counter[Part] = Counter()
    for cfg in cfgs:
        used.update(decompose(cfg, img_size, num_classes).keys())
    return dict(used)


def count_by_kind(parts: Mapping[Part, Any] | Iterable[Part]) -> dict[str, int]:
    """How many of ``parts`` there are of each kind, in `PART_KINDS` order."""
    kinds = Counter(p.kind for p in parts)
    return {k: kinds[k] for k in PART_KINDS if kinds[k]}
