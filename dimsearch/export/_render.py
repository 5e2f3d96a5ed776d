"""A `dimsearch.models.model_call` tree as Python source, laid out as ``ruff format`` keeps it.

Everything written comes from the tree: class names (ours bare, ``torch.nn``'s as ``nn.X``),
`Var` names chosen by the model code, and numbers through `literal`, which accepts only
checked ints, finite floats, bools, ``None`` and tuples of them. A string never reaches the
output, so nothing a study records can become code.

Layout: a construct that fits in `LINE_LENGTH` stays on one line; else it is exploded one
argument per line with a trailing comma, which the formatter keeps as it is.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from dimsearch._values import is_int
from dimsearch.export._record import ExportError
from dimsearch.models._call import Call, Each, Var

__all__ = ["LINE_LENGTH", "Renderer", "literal"]

LINE_LENGTH = 100


def literal(value: Any) -> str:
    """``value`` as Python source: only plain numbers, bools, ``None`` and tuples of them."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if is_int(value):
        return repr(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExportError(f"expected a finite number for generated code, got {value!r}")
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    raise ExportError(f"expected a number for generated code, got {value!r}")


def _is_default(fn: Callable[..., Any], key: str, value: Any) -> bool:
    """Whether ``value`` is what ``fn`` uses anyway when ``key`` is left out."""
    if isinstance(value, (Call, Var, Each, list)):
        return False
    param = inspect.signature(fn).parameters.get(key)
    if param is None or param.default is inspect.Parameter.empty:
        return False
    return type(param.default) is type(value) and param.default == value


class Renderer:
    """Writes nodes of one tree; remembers which classes and `Var` names it wrote.

    Args:
        notes: comments to write above list items, by ``id`` of the item's node.
    """

    def __init__(self, notes: dict[int, str] | None = None) -> None:
        self.notes = notes or {}
        self.classes: list[Callable[..., Any]] = []  # ours, in the order first written
        self.names: set[str] = set()  # the variables the written code reads

    def callee(self, fn: Callable[..., Any]) -> str:
        if getattr(nn, fn.__name__, None) is fn:
            return f"nn.{fn.__name__}"
        if not fn.__module__.startswith("dimsearch."):
            raise ExportError(f"cannot write a call of {fn.__module__}.{fn.__qualname__}")
        if fn not in self.classes:
            self.classes.append(fn)
        return fn.__name__

    def _args(self, call: Call) -> list[tuple[str, Any]]:
        """``(prefix, node)`` per argument, leaving out keywords equal to their default."""
        out = [("", a) for a in call.args]
        out += [(f"{k}=", v) for k, v in call.kwargs if not _is_default(call.fn, k, v)]
        return out

    def expr(self, node: Any) -> str:
        """``node`` on one line."""
        if isinstance(node, Call):
            args = ", ".join(f"{prefix}{self.expr(a)}" for prefix, a in self._args(node))
            return f"{self.callee(node.fn)}({args})"
        if isinstance(node, Var):
            self.names.add(re.match(r"\w+", node.name).group())
            return node.name
        if isinstance(node, Each):
            return f"[{self.expr(node.make(Var(node.name)))} for {node.name} in {self.expr(node.over)}]"
        if isinstance(node, list):
            return f"[{', '.join(self.expr(n) for n in node)}]"
        return literal(node)

    def lines(
        self, node: Any, indent: int, head: str = "", tail: str = "", callee: str | None = None
    ) -> list[str]:
        """``head + node + tail`` at ``indent``, exploded where it does not fit.

        ``callee`` replaces the name of a `Call`'s class (``super().__init__``).
        """
        pad = " " * indent
        text = self.expr(node)
        if callee is not None:
            text = callee + text[text.index("(") :]
        noted = isinstance(node, list) and any(id(n) in self.notes for n in node)
        if len(pad + head + text + tail) <= LINE_LENGTH and not noted:
            return [pad + head + text + tail]
        if isinstance(node, Call):
            name = callee or self.callee(node.fn)
            inner = [ln for p, a in self._args(node) for ln in self.lines(a, indent + 4, p, ",")]
            return [f"{pad}{head}{name}(", *inner, f"{pad}){tail}"]
        if isinstance(node, list):
            inner = []
            for n in node:
                if id(n) in self.notes:
                    inner.append(f"{pad}    # {self.notes[id(n)]}")
                inner += self.lines(n, indent + 4, "", ",")
            return [f"{pad}{head}[", *inner, f"{pad}]{tail}"]
        if isinstance(node, Each):
            item = node.make(Var(node.name))
            loop = f"for {node.name} in {self.expr(node.over)}"
            body = f"{pad}    {self.expr(item)} {loop}"
            if len(body) <= LINE_LENGTH:
                return [f"{pad}{head}[", body, f"{pad}]{tail}"]
            return [
                f"{pad}{head}[",
                *self.lines(item, indent + 4),
                f"{pad}    {loop}",
                f"{pad}]{tail}",
            ]
        return [pad + head + text + tail]  # a literal: nothing to split
