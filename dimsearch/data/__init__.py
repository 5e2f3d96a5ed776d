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

from typing import TYPE_CHECKING

from dimsearch._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__, globals())
