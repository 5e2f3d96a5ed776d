"""dimsearch: a design-space explorer for hierarchical vision transformers.

Public API (everything else is an implementation detail)::

    dimsearch.ArchConfig            # the architecture description (frozen, JSON round-trip)
    dimsearch.build_model(cfg, num_classes=1000, img_size=224)
    dimsearch.zoo.get(name), dimsearch.zoo.names()
    dimsearch.convert_state_dict(state_dict, cfg, source="timm" | "official")
    dimsearch.cost.count_params / count_flops / estimate / measure_latency
    dimsearch.DimsearchError        # root of every user-input error

Heavy modules (torch, timm) load on first use, so ``import dimsearch`` and the CLI's ``--help``
stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dimsearch.config import (
    ArchConfig,
    HeadConfig,
    StageConfig,
    StemConfig,
    TransitionConfig,
)
from dimsearch.errors import (
    ArchError,
    ConversionError,
    DataError,
    DimsearchError,
    SpaceError,
    TrainingError,
)

if TYPE_CHECKING:
    from dimsearch import cost, zoo
    from dimsearch.convert import convert_state_dict
    from dimsearch.models import build_model

__version__ = "0.1.0"

__all__ = [
    "ArchConfig",
    "ArchError",
    "ConversionError",
    "DataError",
    "DimsearchError",
    "HeadConfig",
    "SpaceError",
    "StageConfig",
    "StemConfig",
    "TrainingError",
    "TransitionConfig",
    "build_model",
    "convert_state_dict",
    "cost",
    "zoo",
]

_LAZY = {
    "build_model": ("dimsearch.models", "build_model"),
    "convert_state_dict": ("dimsearch.convert", "convert_state_dict"),
    "cost": ("dimsearch.cost", None),
    "zoo": ("dimsearch.zoo", None),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'dimsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
