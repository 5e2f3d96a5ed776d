"""What a model costs: parameters, FLOPs and latency, measured or estimated.

Two ways to the same figures:

* measured on a built model: :func:`count_params`, :func:`count_flops` (fvcore, with
  scaled-dot-product attention counted) and :func:`measure_latency` (under the node's
  :func:`measurement_lock`, which proxy training yields to at epoch boundaries);
* estimated from an `ArchConfig` alone: :func:`estimate`, pycls-style per-part formulas that
  need no model and no torch, so a search can reject an over-budget sample before building
  it. Tests hold it equal to the measured counts.

Usage::

    from dimsearch import build_model, cost, zoo
    cfg = zoo.get("pit_ti")
    cost.estimate(cfg).flops                   # 702020096, in microseconds
    cost.count_flops(build_model(cfg))         # the same, by tracing
    cost.measure_latency(build_model(cfg)).median_ms

Importing this package does not import torch; the measuring functions import it when called.
"""

from __future__ import annotations

from dimsearch.cost._analytic import CostEstimate, PartCost, estimate
from dimsearch.cost._flops import count_flops
from dimsearch.cost._latency import (
    CLOCKS,
    MODES,
    PRECISIONS,
    LatencyResult,
    LatencySettings,
    measure_latency,
)
from dimsearch.cost._lock import measurement_lock, training_slot
from dimsearch.cost._params import count_params

__all__ = [
    "CLOCKS",
    "MODES",
    "PRECISIONS",
    "CostEstimate",
    "LatencyResult",
    "LatencySettings",
    "PartCost",
    "count_flops",
    "count_params",
    "estimate",
    "measure_latency",
    "measurement_lock",
    "training_slot",
]
