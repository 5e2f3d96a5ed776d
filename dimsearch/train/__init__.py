"""Proxy training: train a sampled architecture briefly and report accuracy every epoch.

Public API::

    TrainConfig.from_dict(mapping)                  # a space YAML's train: mapping
    train_proxy(arch, data, cfg, device=None, report=None) -> TrainResult
    proxy_check(models, seeds, data=..., train=...) -> ProxyCheckResult   # proxy vs ImageNet
    bench_train(model, img_size, ...) -> TrainBench                       # throughput figures

`prepare` and `Trainer` (one optimisation step) are exported for code that needs the step
without the epoch loop, as the benchmark does.

Only the torch-free config and `proxy_check` are imported with the package; everything else (torch, timm) on
first use, so validating a space file does not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dimsearch._lazy import lazy_exports
from dimsearch.train.config import AMP_MODES, AUGMENTS, TrainConfig

# Torch-free, and imported here rather than on first use because the function `proxy_check`
# shares its name with its module: a lazy name would be shadowed by the module as soon as
# anything imported `dimsearch.train.proxy_check`.
from dimsearch.train.proxy_check import (
    DEFAULT_IMG_SIZE,
    DEFAULT_MODELS,
    DEFAULT_SEEDS,
    ModelCheck,
    ProxyCheckResult,
    default_data,
    proxy_check,
)

if TYPE_CHECKING:
    from dimsearch.train.bench import TrainBench, bench_train
    from dimsearch.train.loop import EpochResult, TrainResult, evaluate, train_proxy
    from dimsearch.train.step import Trainer, prepare, resolve_device

__all__ = [
    "AMP_MODES",
    "AUGMENTS",
    "DEFAULT_IMG_SIZE",
    "DEFAULT_MODELS",
    "DEFAULT_SEEDS",
    "EpochResult",
    "ModelCheck",
    "ProxyCheckResult",
    "TrainBench",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "bench_train",
    "default_data",
    "evaluate",
    "prepare",
    "proxy_check",
    "resolve_device",
    "train_proxy",
]

# public name -> module, imported on first use
_HOMES = {
    "EpochResult": "loop",
    "TrainBench": "bench",
    "TrainResult": "loop",
    "Trainer": "step",
    "bench_train": "bench",
    "evaluate": "loop",
    "prepare": "step",
    "resolve_device": "step",
    "train_proxy": "loop",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__, globals())
