"""Lazy re-exports: a package names its public objects, their modules load on first use.

Why: `import dimsearch.train` (or `.data`, `.analysis`) must not pull torch, timm or
matplotlib in when all a caller needs is a config, e.g. validating a space file; the CLI's
``--help`` stays instant for the same reason. One implementation for every package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, str], public: Iterable[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` for names imported on first use.

    Args:
        package: the package's ``__name__``.
        homes: public name -> the submodule (relative to ``package``) that defines it.
        public: the package's ``__all__``.
        namespace: the package's ``globals()`` (its eager names, for ``dir``).
    """
    names = sorted(set(public))

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
