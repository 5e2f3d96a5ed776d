"""Proxy datasets: what a search trains its sampled architectures on, prepared once.

Public API::

    cfg = DataConfig.from_dict(space["data"])      # kind: synthetic | imagefolder | idx
    data = load_data(cfg)                          # ProxyData: train/val Splits, stats, info
    loader = DeviceLoader(data.train, 256, "cuda", train=True, mean=data.mean, std=data.std)

* ``synthetic`` (`dimsearch.data.synthetic`): built in, deterministic, classes that need
  shapes, textures and their arrangement.
* ``imagefolder`` (`dimsearch.data.imagefolder`): ``root/{train,val}/<class>/*`` decoded once
  at proxy resolution into a verified, memory-mapped cache (`dimsearch.data.cache`).
* ``idx`` (`dimsearch.data.idx`): MNIST-style IDX files such as Fashion-MNIST.

Imports run one way: `kinds` (the kind -> loader table) <- `config` <- `dataset` (`ProxyData`)
<- the loaders <- `load` (`load_data`). Only the config is imported with the package; the rest
(numpy, and torch for `DeviceLoader`) on first use, so validating a space, decoding workers and
the CLI's ``--help`` do not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dimsearch.data.config import KINDS, ON_CORRUPT, DataConfig, default_cache_dir

if TYPE_CHECKING:
    from dimsearch.data.dataset import ProxyData, Split
    from dimsearch.data.load import load_data
    from dimsearch.data.loader import AUGMENTS, DeviceLoader

__all__ = [
    "AUGMENTS",
    "KINDS",
    "ON_CORRUPT",
    "DataConfig",
    "DeviceLoader",
    "ProxyData",
    "Split",
    "default_cache_dir",
    "load_data",
]

# public name -> module, imported on first use
_HOMES = {
    "AUGMENTS": "loader",
    "DeviceLoader": "loader",
    "ProxyData": "dataset",
    "Split": "dataset",
    "load_data": "load",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
