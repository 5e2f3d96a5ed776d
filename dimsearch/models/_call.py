"""A model as data: the constructor calls that build it, which the library runs and
`dimsearch export` writes out.

`dimsearch.models.hvit` describes an architecture once, as a tree of `Call`s (a layer class or a
``torch.nn`` class with its arguments). `build` runs the tree; the exporter prints the same tree
as Python and copies the source of the classes it names. So the exported model is made of the
library's own layers, built with the same arguments, and its parameter names match by
construction.

Two values are not literal numbers: a `Var` is something the exported file computes from its
factory's arguments (``in_chans``, ``sides[0]``) while the library knows its value, and `Each`
is a list comprehension (a stage's blocks, one per drop-path rate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Call", "Each", "Var", "build"]


@dataclass(frozen=True)
class Var:
    """A value named in the exported code (``name``, an expression) and known here (``value``)."""

    name: str
    value: Any = None


@dataclass(frozen=True, init=False)
class Call:
    """``fn(*args, **kwargs)``, kept as data; arguments may be `Call`, `Var`, `Each` or lists."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", tuple(kwargs.items()))


@dataclass(frozen=True)
class Each:
    """``[make(v) for <name> in over]``: one call per value of ``over``."""

    name: str
    over: Var
    make: Callable[[Any], Call]


def build(node: Any) -> Any:
    """Run the calls in ``node``, arguments first and in the order written (which fixes the order
    in which layers draw their random initial weights)."""
    if isinstance(node, Call):
        args = [build(a) for a in node.args]
        kwargs = {key: build(value) for key, value in node.kwargs}
        return node.fn(*args, **kwargs)
    if isinstance(node, Var):
        return node.value
    if isinstance(node, Each):
        return [build(node.make(value)) for value in node.over.value]
    if isinstance(node, list):
        return [build(n) for n in node]
    return node
