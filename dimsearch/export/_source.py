"""The library's own source for an exported file: the classes a model uses, and what they use.

`layer_sources` starts from the classes and functions the generated code names, reads each
one's source with `inspect.getsource`, and follows the global names it uses: a class or
function of dimsearch is copied too, ``torch``, ``nn`` and ``F`` become the file's imports, and
anything else (a constant, a helper from another library) is an error, because the file
could not define it. So an exported file holds exactly the layers its architecture is built
from, as the library defines them.
"""

from __future__ import annotations

import ast
import inspect
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dimsearch.export._record import ExportError

__all__ = ["IMPORTS", "layer_sources"]

# the modules a copied source may use, by the name it must use for them, and their import line
IMPORTS = {
    "torch": (torch, "import torch"),
    "F": (F, "import torch.nn.functional as F"),
    "nn": (nn, "from torch import nn"),
}

# the order a reader meets the copied code in: helpers, then the layers from pixels to logits,
# then the model (a module not named here goes just before the model)
READING_ORDER = (
    "dimsearch.config",
    "dimsearch.layers.stem",
    "dimsearch.layers.pos_embed",
    "dimsearch.layers.transition",
    "dimsearch.layers.attention",
    "dimsearch.layers.block",
    "dimsearch.layers.stage",
    "dimsearch.models.hvit",
)


def _is_ours(obj: Any) -> bool:
    return (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith(
        "dimsearch."
    )


def _rank(obj: Any) -> tuple[float, int]:
    module = obj.__module__
    rank = READING_ORDER.index(module) if module in READING_ORDER else len(READING_ORDER) - 1.5
    return rank, inspect.getsourcelines(obj)[1]


def layer_sources(roots: list[Any]) -> tuple[list[str], set[str]]:
    """The source of every object in ``roots`` and of the dimsearch objects they use, in
    reading order, and the names from `IMPORTS` that code uses.

    Raises:
        ExportError: some copied code uses a global the exported file could not define, or
            two copied objects have the same name.
    """
    found: set[Any] = set()
    imports: set[str] = set()
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if obj in found:
            continue
        found.add(obj)
        scope = vars(sys.modules[obj.__module__])
        names = {
            n.id for n in ast.walk(ast.parse(inspect.getsource(obj))) if isinstance(n, ast.Name)
        }
        for name in sorted(names):
            ref = scope.get(name)
            if ref is None or ref is obj:
                continue  # a local or a builtin
            if name in IMPORTS and ref is IMPORTS[name][0]:
                imports.add(name)
            elif _is_ours(ref):
                todo.append(ref)
            else:
                raise ExportError(
                    f"{obj.__module__}.{obj.__qualname__} uses {name!r}, which an exported file "
                    f"cannot define; layers may use only torch, nn, F and dimsearch's own layers"
                )
    ordered = sorted(found, key=_rank)
    names = [obj.__name__ for obj in ordered]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ExportError(f"two copied layers would share the names {clash}; rename one")
    return [inspect.getsource(obj) for obj in ordered], imports
