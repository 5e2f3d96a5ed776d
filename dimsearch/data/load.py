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
from dimsearch.data.kinds import LOADERS, PROBES
from dimsearch.errors import DataError

__all__ = ["Loader", "load_data", "loader", "probe_data"]

Loader = Callable[..., ProxyData]  # (cfg: DataConfig, progress: bool = False) -> ProxyData


def loader(kind: str) -> Loader:
    """The function that prepares datasets of ``kind`` (a key of `LOADERS`), imported now."""
    module, _, name = LOADERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def probe_data(cfg: DataConfig) -> int:
    """Check, cheaply, that ``cfg``'s dataset can be loaded and is a classification task:
    the source exists with the layout its kind needs, one image a split decodes, and it
    has at least two classes (with one, every trial scores 100% and ranks nothing).

    Returns:
        The number of classes the dataset will have.

    Raises:
        DataError: what `load_data` would raise for the layout, or fewer than two classes.
    """
    module, _, name = PROBES[cfg.kind].partition(":")
    classes = getattr(importlib.import_module(module), name)(cfg)
    if classes < 2:
        source = f" in {cfg.root}" if cfg.root else ""
        raise DataError(
            f"data ({cfg.kind}{source}) has {classes} class; a proxy classification needs "
            "at least 2 (with one, every trial scores 100% and the search ranks nothing)"
        )
    return classes


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
