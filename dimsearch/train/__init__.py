"""Proxy training: train a sampled architecture briefly and report accuracy every epoch.

Public API::

    TrainConfig.from_dict(mapping)                  # a space YAML's train: mapping
    train_proxy(arch, data, cfg, device=None, report=None) -> TrainResult
    proxy_check(models, seeds, data=..., train=...) -> ProxyCheckResult   # proxy vs ImageNet
    bench_train(model, img_size, ...) -> TrainBench                       # throughput figures

`prepare` and `Trainer` (one optimisation step) are exported for code that needs the step
without the epoch loop, as the benchmark does.
"""

from __future__ import annotations

from dimsearch.train.bench import TrainBench, bench_train
from dimsearch.train.config import AMP_MODES, AUGMENTS, TrainConfig
from dimsearch.train.loop import EpochResult, TrainResult, evaluate, train_proxy
from dimsearch.train.proxy_check import (
    DEFAULT_IMG_SIZE,
    DEFAULT_MODELS,
    DEFAULT_SEEDS,
    ModelCheck,
    ProxyCheckResult,
    default_data,
    proxy_check,
)
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
