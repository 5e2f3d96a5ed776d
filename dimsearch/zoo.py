"""Registry of published fixed points: PiT and ResT as exact `ArchConfig`s.

Each entry is a few lines, like timm's registered model functions, and carries the ImageNet
top-1 its paper reports so plots and proxy checks can set the search against it:

* PiT (Heo et al., ICCV 2021, Table 4, DeiT training; distilled: "+Distill" column).
* ResT (Zhang & Yang, NeurIPS 2021, Table 2). The released code uses the 3x3 ``conv3`` stem;
  the paper's parameter and FLOP figures were measured with the 7x7 ``conv7`` stem, which the
  ``*_paper`` entries reproduce. The paper gives one accuracy per size, listed for both.

Usage::

    from dimsearch import zoo, build_model
    model = build_model(zoo.get("pit_s"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dimsearch.config import ArchConfig, HeadConfig, StageConfig, StemConfig, TransitionConfig
from dimsearch.errors import ArchError

__all__ = ["ZooEntry", "entries", "get", "info", "label", "names", "register", "timm_name"]


@dataclass(frozen=True)
class ZooEntry:
    """A named fixed point: its config, family, label for plots and published accuracy.

    ``timm`` names timm's implementation of the same model, where there is one (the PiT
    family): the equivalence tests and the speed benchmarks compare against it.
    """

    name: str
    family: str
    label: str
    cfg: ArchConfig
    top1: float | None
    source: str
    timm: str | None = None


_REGISTRY: dict[str, ZooEntry] = {}


def register(
    family: str, label: str, top1: float | None, source: str, timm: str | None = None
) -> Callable:
    """Decorator: register a zero-argument function returning an `ArchConfig` under its name."""

    def wrap(fn: Callable[[], ArchConfig]) -> Callable[[], ArchConfig]:
        name = fn.__name__
        cfg = fn().replace(name=name)
        _REGISTRY[name] = ZooEntry(name, family, label, cfg, top1, source, timm)
        return fn

    return wrap


def names(family: str | None = None) -> list[str]:
    """Registered names in registration order, optionally only one family (``pit``/``rest``)."""
    return [n for n, e in _REGISTRY.items() if family is None or e.family == family]


def info(name: str) -> ZooEntry:
    """The full registry entry for ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ArchError(f"unknown zoo model {name!r}; known: {', '.join(_REGISTRY)}") from None


def get(name: str) -> ArchConfig:
    """The `ArchConfig` of a registered fixed point."""
    return info(name).cfg


def entries() -> list[ZooEntry]:
    return list(_REGISTRY.values())


def label(name: str | None) -> str:
    """The plot label of a zoo name (``pit_ti`` -> ``PiT-Ti``); unknown names come back as
    they are (a study may name a seed an older or newer zoo had), ``None`` as ``""``."""
    if not name:
        return ""
    if not isinstance(name, str):  # read from a study someone edited: show it, do not fail
        return str(name)
    entry = _REGISTRY.get(name)
    return entry.label if entry else name


def timm_name(name: str) -> str | None:
    """timm's model name for zoo model ``name``, or None where timm has no twin."""
    return info(name).timm


# --- PiT ----------------------------------------------------------------------------------------
_PIT_PAPER = "Heo et al. 2021, PiT, Table 4 (DeiT training)"


def _pit(
    base_dim: int,
    depths: tuple[int, ...],
    heads: tuple[int, ...],
    patch: int,
    stride: int,
    distilled: bool = False,
) -> ArchConfig:
    # width = base_dim * heads: PiT keeps the head dim fixed and doubles heads at each pool
    stages = tuple(
        StageConfig(depth=d, dim=base_dim * h, heads=h, pos="le" if i == 0 else "none")
        for i, (d, h) in enumerate(zip(depths, heads, strict=True))
    )
    return ArchConfig(
        stem=StemConfig("patch", patch_size=patch, stride=stride),
        stages=stages,
        transitions=(TransitionConfig("dwconv"),) * (len(stages) - 1),
        head=HeadConfig("token", distilled=distilled),
        norm_eps=1e-6,
    )


@register("pit", "PiT-Ti", 73.0, _PIT_PAPER, timm="pit_ti_224")
def pit_ti() -> ArchConfig:
    return _pit(32, (2, 6, 4), (2, 4, 8), patch=16, stride=8)


@register("pit", "PiT-XS", 78.1, _PIT_PAPER, timm="pit_xs_224")
def pit_xs() -> ArchConfig:
    return _pit(48, (2, 6, 4), (2, 4, 8), patch=16, stride=8)


@register("pit", "PiT-S", 80.9, _PIT_PAPER, timm="pit_s_224")
def pit_s() -> ArchConfig:
    return _pit(48, (2, 6, 4), (3, 6, 12), patch=16, stride=8)


@register("pit", "PiT-B", 82.0, _PIT_PAPER, timm="pit_b_224")
def pit_b() -> ArchConfig:
    return _pit(64, (3, 6, 4), (4, 8, 16), patch=14, stride=7)


@register("pit", "PiT-Ti-dist", 74.6, _PIT_PAPER, timm="pit_ti_distilled_224")
def pit_ti_distilled() -> ArchConfig:
    return _pit(32, (2, 6, 4), (2, 4, 8), patch=16, stride=8, distilled=True)


@register("pit", "PiT-XS-dist", 79.1, _PIT_PAPER, timm="pit_xs_distilled_224")
def pit_xs_distilled() -> ArchConfig:
    return _pit(48, (2, 6, 4), (2, 4, 8), patch=16, stride=8, distilled=True)


@register("pit", "PiT-S-dist", 81.9, _PIT_PAPER, timm="pit_s_distilled_224")
def pit_s_distilled() -> ArchConfig:
    return _pit(48, (2, 6, 4), (3, 6, 12), patch=16, stride=8, distilled=True)


@register("pit", "PiT-B-dist", 84.0, _PIT_PAPER, timm="pit_b_distilled_224")
def pit_b_distilled() -> ArchConfig:
    return _pit(64, (3, 6, 4), (4, 8, 16), patch=14, stride=7, distilled=True)


# --- ResT ---------------------------------------------------------------------------------------
_REST_PAPER = "Zhang & Yang 2021, ResT, Table 2"


def rest_config(
    dims: tuple[int, ...],
    depths: tuple[int, ...],
    heads: tuple[int, ...] = (1, 2, 4, 8),
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
    stem: str = "conv3",
    drop_path_rate: float = 0.0,
) -> ArchConfig:
    """A ResT-v1 config: PA everywhere, EMSA with dwconv reduction, head interaction wherever
    a stage has more than one head (as ``apply_transform=True`` does in the official code)."""
    stages = tuple(
        StageConfig(
            depth=d, dim=c, heads=h, sr_ratio=r, sr_kind="dwconv", head_interaction=h > 1, pos="pa"
        )
        for d, c, h, r in zip(depths, dims, heads, sr_ratios, strict=True)
    )
    return ArchConfig(
        stem=StemConfig(stem),
        stages=stages,
        transitions=(TransitionConfig("conv"),) * (len(stages) - 1),
        head=HeadConfig("avg"),
        norm_eps=1e-5,
        drop_path_rate=drop_path_rate,
    )


_REST_SIZES = {
    "lite": ((64, 128, 256, 512), (2, 2, 2, 2)),
    "small": ((64, 128, 256, 512), (2, 2, 6, 2)),
    "base": ((96, 192, 384, 768), (2, 2, 6, 2)),
    "large": ((96, 192, 384, 768), (2, 2, 18, 2)),
}


@register("rest", "ResT-Lite", 77.2, _REST_PAPER)
def rest_lite() -> ArchConfig:
    return rest_config(*_REST_SIZES["lite"])


@register("rest", "ResT-Small", 79.6, _REST_PAPER)
def rest_small() -> ArchConfig:
    return rest_config(*_REST_SIZES["small"])


@register("rest", "ResT-Base", 81.6, _REST_PAPER)
def rest_base() -> ArchConfig:
    return rest_config(*_REST_SIZES["base"])


@register("rest", "ResT-Large", 83.6, _REST_PAPER)
def rest_large() -> ArchConfig:
    return rest_config(*_REST_SIZES["large"])


@register("rest", "ResT-Lite (7x7)", 77.2, _REST_PAPER + ", 7x7 stem")
def rest_lite_paper() -> ArchConfig:
    return rest_config(*_REST_SIZES["lite"], stem="conv7")


@register("rest", "ResT-Small (7x7)", 79.6, _REST_PAPER + ", 7x7 stem")
def rest_small_paper() -> ArchConfig:
    return rest_config(*_REST_SIZES["small"], stem="conv7")


@register("rest", "ResT-Base (7x7)", 81.6, _REST_PAPER + ", 7x7 stem")
def rest_base_paper() -> ArchConfig:
    return rest_config(*_REST_SIZES["base"], stem="conv7")


@register("rest", "ResT-Large (7x7)", 83.6, _REST_PAPER + ", 7x7 stem")
def rest_large_paper() -> ArchConfig:
    return rest_config(*_REST_SIZES["large"], stem="conv7")
