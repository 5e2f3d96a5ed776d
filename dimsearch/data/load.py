"""`load_data`: prepare the proxy dataset a `DataConfig` describes, with the loader of its kind.

This is the one module that imports the loaders (through `dimsearch.data.kinds.LOADERS`, on
first use, so a synthetic run never imports PIL's decoders); they import the generic
`dimsearch.data.dataset` and the config, and nothing imports this module back.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

from dimsearch.data.config import DataConfig
from dimsearch.data.dataset import ProxyData
from dimsearch.data.kinds import LOADERS

__all__ = ["Loader", "load_data", "loader"]

Loader = Callable[..., ProxyData]  # (cfg: DataConfig, progress: bool = False) -> ProxyData


def loader(kind: str) -> Loader:
    """The function that prepares datasets of ``kind`` (a key of `LOADERS`), imported now."""
    module, _, name = LOADERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def load_data(cfg: DataConfig, progress: bool = False) -> ProxyData:
    """Prepare the dataset ``cfg`` describes, reusing its cache when nothing changed.

    Args:
        cfg: the dataset to load.
        progress: show a progress bar on the terminal while decoding or generating.

    Raises:
        DataError: the source is missing, malformed or empty; the message names the path.
    """
    start = time.perf_counter()
    data = loader(cfg.kind)(cfg, progress=progress)
    data.info["seconds"] = round(time.perf_counter() - start, 3)
    return data
