"""The two value rules every config layer checks user input against.

YAML and JSON hand back bools where numbers were meant (``true`` is an int to Python) and
infinities that would end up in generated code or a learning rate, so "a number" here always
means a finite one that is not a bool.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["is_int", "is_number"]


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
