"""`Budgets`: upper limits on a model's cost figures, for a search and for an export.

A space's ``budgets:`` section drops samples before they are trained (GFLOPs and params
analytically, latency once measured); ``dimsearch export --max-gflops/--max-params/
--max-latency-ms`` keeps the front trials whose recorded figures fit. Both are the same
question asked of the same figures, so they are one type with one rule: `Budgets.violations`.

Figures are keyed by their objective names (``gflops``, ``params_m``, ``latency_ms``); a
figure that is known to be missing (``None``) never fits a limit set on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from dimsearch._rules import Rule, Where, check_fields
from dimsearch.errors import DimsearchError

__all__ = ["BUDGET_RULES", "Budgets"]

_LIMIT = Rule("number", low=0, low_open=True, optional=True)
BUDGET_RULES = {"max_gflops": _LIMIT, "max_params_m": _LIMIT, "max_latency_ms": _LIMIT}

# limit -> (figure it bounds, how a violation prints the figure)
_FIGURES = {
    "max_gflops": ("gflops", "{:.3f} GFLOPs"),
    "max_params_m": ("params_m", "{:.2f} M params"),
    "max_latency_ms": ("latency_ms", "{:.2f} ms"),
}


@dataclass(frozen=True)
class Budgets:
    """Upper limits on cost figures; ``None`` means no limit.

    In a space they are taken at its ``target_img_size``; in an export they apply to the
    figures each trial recorded (measured at that same resolution).

    Attributes:
        max_gflops: multiply-adds / 1e9.
        max_params_m: parameters, in millions.
        max_latency_ms: the median latency.
    """

    max_gflops: float | None = None
    max_params_m: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, BUDGET_RULES, Where(raises=DimsearchError))

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in dataclasses.astuple(self))

    def violations(self, figures: Mapping[str, float | None]) -> list[str]:
        """Why ``figures`` are over budget (``"0.702 GFLOPs > max_gflops 0.5"``), or ``[]``.

        Args:
            figures: ``gflops``, ``params_m`` and/or ``latency_ms``. Only the figures given are
                checked (a search checks latency after the others); one given as ``None``
                (unknown) violates any limit set on it.
        """
        out = []
        for key, (figure, fmt) in _FIGURES.items():
            limit = getattr(self, key)
            if limit is None or figure not in figures:
                continue
            value = figures[figure]
            if value is None:
                out.append(f"no {figure} figure for {key} {limit:g}")
            elif not value <= limit:
                out.append(f"{fmt.format(value)} > {key} {limit:g}")
        return out
