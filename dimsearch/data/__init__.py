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

`DeviceLoader` (and so torch) is imported on first use, so decoding workers and the CLI's
``--help`` do not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dimsearch.data.config import KINDS, ON_CORRUPT, DataConfig, default_cache_dir
from dimsearch.data.dataset import ProxyData, Split, load_data

if TYPE_CHECKING:
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

_LAZY = {"AUGMENTS": "dimsearch.data.loader", "DeviceLoader": "dimsearch.data.loader"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dimsearch.data' has no attribute {name!r}")
