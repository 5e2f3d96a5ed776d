"""The kinds of proxy dataset: one table from a ``data.kind`` name to the function loading it,
and one to the function that checks, cheaply, that it can be loaded (`PROBES`).

`KINDS`, the names a space may give, is derived from the table, so a new kind is one line in
each table plus a module with its ``build_*`` and ``probe_*`` functions. Entries are ``"module:function"`` strings resolved
by `dimsearch.data.load`: this module imports nothing, so `DataConfig` can validate a kind
without importing a loader (or PIL), and the loaders, which import the config, are never
imported back by it.
"""

from __future__ import annotations

__all__ = ["KINDS", "LOADERS", "PROBES"]

# kind -> "module:function"; the function takes (cfg: DataConfig, progress: bool) -> ProxyData
LOADERS: dict[str, str] = {
    "synthetic": "dimsearch.data.synthetic:build_synthetic",
    "imagefolder": "dimsearch.data.imagefolder:build_imagefolder",
    "idx": "dimsearch.data.idx:build_idx",
}
# kind -> "module:function"; the function takes (cfg: DataConfig) -> int, the number of classes
# the dataset will have, reading no more than a listing and one image a split (a run checks
# its data with it before it creates a study; a whole ImageNet is not decoded for that)
PROBES: dict[str, str] = {
    "synthetic": "dimsearch.data.synthetic:probe_synthetic",
    "imagefolder": "dimsearch.data.imagefolder:probe_imagefolder",
    "idx": "dimsearch.data.idx:probe_idx",
}
KINDS: tuple[str, ...] = tuple(LOADERS)
