"""What a model costs: parameters, FLOPs and latency, measured or estimated.

Two ways to the same figures:

* measured on a built model: :func:`count_params`, :func:`count_flops` (fvcore, with
  scaled-dot-product attention counted) and :func:`measure_latency` (under the node's
  :func:`measurement_lock`, which proxy training yields to at epoch boundaries);
* estimated from an `ArchConfig` alone: :func:`estimate`, pycls-style per-part formulas that
  need no model and no torch, so a search can reject an over-budget sample before building
  it. Tests hold it equal to the measured counts. Latency likewise:
  :func:`predict_latency` sums a per-device :class:`LatencyTable` of building blocks timed
  once (:func:`calibrate`), also without torch.

Usage::

    from dimsearch import build_model, cost, zoo
    cfg = zoo.get("pit_ti")
    cost.estimate(cfg).flops                   # 702020096, in microseconds
    cost.count_flops(build_model(cfg))         # the same, by tracing
    cost.measure_latency(build_model(cfg)).median_ms
    table = cost.open_table(cost.LatencySettings(threads=1))
    cost.calibrate(table, [cfg], fit_models=[cfg])
    cost.predict_latency(cfg, table)           # ms, without building the model

Importing this package does not import torch; the measuring functions import it when called.
"""

from __future__ import annotations

from dimsearch.cost._analytic import CostEstimate, PartCost, estimate
from dimsearch.cost._flops import count_flops
from dimsearch.cost._latency import (
    CLOCKS,
    LATENCY_RULES,
    MODES,
    PRECISIONS,
    LatencyResult,
    LatencySettings,
    measure_latency,
)
from dimsearch.cost._lock import measurement_lock, training_slot
from dimsearch.cost._params import count_params
from dimsearch.cost._parts import Part, decompose, distinct_parts
from dimsearch.cost._predict import (
    CalibrationReport,
    LatencyTable,
    calibrate,
    open_table,
    predict_latency,
)

__all__ = [
    "CLOCKS",
    "LATENCY_RULES",
    "MODES",
    "PRECISIONS",
    "CalibrationReport",
    "CostEstimate",
    "LatencyResult",
    "LatencySettings",
    "LatencyTable",
    "Part",
    "PartCost",
    "calibrate",
    "count_flops",
    "count_params",
    "decompose",
    "distinct_parts",
    "estimate",
    "measure_latency",
    "measurement_lock",
    "open_table",
    "predict_latency",
    "training_slot",
]
