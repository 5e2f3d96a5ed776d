"""The kinds of proxy dataset: one table from a ``data.kind`` name to the function loading it.

`KINDS`, the names a space may give, is derived from the table, so a new kind is one line here
plus a module with its ``build_*`` function. Entries are ``"module:function"`` strings resolved
by `dimsearch.data.load`: this module imports nothing, so `DataConfig` can validate a kind
without importing a loader (or PIL), and the loaders, which import the config, are never
imported back by it.
"""

from __future__ import annotations

__all__ = ["KINDS", "LOADERS"]

# kind -> "module:function"; the function takes (cfg: DataConfig, progress: bool) -> ProxyData
LOADERS: dict[str, str] = {
    "synthetic": "dimsearch.data.synthetic:build_synthetic",
    "imagefolder": "dimsearch.data.imagefolder:build_imagefolder",
    "idx": "dimsearch.data.idx:build_idx",
}
KINDS: tuple[str, ...] = tuple(LOADERS)
