"""The value rules every config layer checks user input against, and the one JSON writer.

YAML and JSON hand back bools where numbers were meant (``true`` is an int to Python) and
infinities that would end up in generated code or a learning rate, so "a number" here always
means a finite one that is not a bool. The other way out, every JSON dimsearch writes for a
reader (``--json`` output, a report's data.json) goes through :func:`json_text`, because
Python's ``json`` writes ``Infinity`` and ``NaN``, which no other JSON parser reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["is_int", "is_number", "json_safe", "json_text"]


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (inf, -inf, NaN) as ``None``, numpy arrays and
    scalars as lists and numbers, and paths as their name: JSON has no such numbers (Python's
    ``Infinity`` is not JSON), storage backends reject or mangle them, and a reader must get
    JSON any parser reads, whatever a study holds."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return value.name
    if not isinstance(value, (str, int, float, bool)) and hasattr(value, "tolist"):
        return json_safe(value.tolist())  # numpy arrays and scalars
    return value


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``value`` as strict JSON text (see :func:`json_safe`); a value JSON cannot hold at all
    is a bug here, not something to write as ``str``, so it raises ``TypeError``."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)
