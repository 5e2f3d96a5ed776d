"""An architecture in words: the per-stage table and one-line summary that the report and the
dashboard notes show, built from the ``arch`` JSON a trial stores (nothing else needed)."""

from __future__ import annotations

from typing import Any

from dimsearch.config import ArchConfig
from dimsearch.errors import DimsearchError
from dimsearch.search.study import Attr

STAGE_COLUMNS = ("stage", "grid", "width", "heads", "depth", "attention", "pos")


def arch_of(user_attrs: dict[str, Any]) -> ArchConfig | None:
    """The trial's `ArchConfig`, or ``None`` if it has none (or one this version rejects)."""
    data = user_attrs.get(Attr.ARCH)
    if not data:
        return None
    try:
        return ArchConfig.from_dict(data)
    except DimsearchError:
        return None


def _attention(stage: Any) -> str:
    text = "full" if stage.sr_ratio == 1 else f"sr {stage.sr_ratio} {stage.sr_kind}"
    return text + (" + head mix" if stage.head_interaction else "")


def stage_rows(cfg: ArchConfig, img_size: int = 224) -> list[dict[str, str]]:
    """One row per stage: token grid at ``img_size``, width, heads, depth, attention, pos."""
    try:
        grids = [f"{h}×{w}" for h, w in cfg.grids(img_size)]
    except DimsearchError:
        grids = ["?"] * len(cfg.stages)
    return [
        {
            "stage": str(i),
            "grid": grid,
            "width": str(s.dim),
            "heads": str(s.heads),
            "depth": str(s.depth),
            "attention": _attention(s),
            "pos": s.pos,
        }
        for i, (s, grid) in enumerate(zip(cfg.stages, grids, strict=True), 1)
    ]


def stem_text(cfg: ArchConfig) -> str:
    st = cfg.stem
    if st.kind == "patch":
        return f"patch {st.patch_size}/{st.stride}"
    return st.kind


def head_text(cfg: ArchConfig) -> str:
    return cfg.head.pool + (" + distillation token" if cfg.head.distilled else "")


def transitions_text(cfg: ArchConfig) -> str:
    kinds = [t.kind for t in cfg.transitions]
    if not kinds:
        return "none"
    if len(set(kinds)) == 1:
        return f"{kinds[0]} ×{len(kinds)}"
    return ", ".join(kinds)


def arch_line(cfg: ArchConfig) -> str:
    """``depth 2-6-4 · width 64-128-256 · heads 2-4-8 · patch 16/8 · dwconv · le · token``."""

    def join(xs: list[int]) -> str:
        return "-".join(map(str, xs))

    pos = sorted({s.pos for s in cfg.stages} - {"none"}) or ["none"]
    return " · ".join(
        [
            f"depth {join([s.depth for s in cfg.stages])}",
            f"width {join([s.dim for s in cfg.stages])}",
            f"heads {join([s.heads for s in cfg.stages])}",
            stem_text(cfg),
            "/".join(dict.fromkeys(t.kind for t in cfg.transitions)) or "one stage",
            "/".join(pos),
            head_text(cfg),
        ]
    )
