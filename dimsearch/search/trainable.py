"""The Ray Tune trainable: one architecture, measured then proxy-trained, on a Ray worker.

`run_trial` is a plain module-level function taking a plain dict, so Ray pickles it by
reference and any node with dimsearch installed can run it. Everything it needs travels in
that dict (`trial_payload` builds it); it reports through ``ray.tune.report`` and touches no
study: the driver alone writes to Optuna storage (a worker on another node may not reach a
sqlite file).

Reports, all with ``epoch`` (the scheduler's time axis) and ``accuracy`` (top-1, %):

* epoch 0, only when the measured latency is over budget: ``over_budget`` says why, and the
  trial ends without training (the driver records it as PRUNED);
* epochs 1..E: the held-out accuracy after each epoch, with the loss curve and timing (and,
  for a cached dataset, ``data_cache``: the cache's key and checksum); the
  last one carries the trained weights as a Ray checkpoint (``model.pt``, a state dict of
  the proxy-sized model), which the driver records so `dimsearch export --weights` finds it.

Every report carries the latency figure and where the trial ran.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["run_trial", "trial_payload"]


def trial_payload(
    arch: dict[str, Any],
    *,
    data: dict[str, Any],
    train: dict[str, Any],
    latency: dict[str, Any],
    target_img_size: int,
    num_classes: int,
    max_latency_ms: float | None,
    cpus: float,
    gpus: float,
) -> dict[str, Any]:
    """The JSON-able dict `run_trial` receives as its Ray config."""
    return {
        "arch": arch,
        "data": data,
        "train": train,
        "latency": latency,
        "target_img_size": target_img_size,
        "num_classes": num_classes,
        "max_latency_ms": max_latency_ms,
        "cpus": cpus,
        "gpus": gpus,
    }


def _where() -> dict[str, Any]:
    import ray

    return {
        "hostname": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


def run_trial(config: dict[str, Any]) -> None:
    """Measure latency at the target resolution, then proxy-train and report every epoch."""
    import torch
    from ray import tune

    from dimsearch.config import ArchConfig
    from dimsearch.cost import LatencySettings, measure_latency
    from dimsearch.data import DataConfig, load_data
    from dimsearch.models import build_model
    from dimsearch.search.budgets import Budgets
    from dimsearch.train import TrainConfig, train_proxy

    torch.set_num_threads(max(1, int(config["cpus"])))
    arch = ArchConfig.from_dict(config["arch"])
    device = "cuda" if config["gpus"] > 0 and torch.cuda.is_available() else "cpu"
    if device == "cuda" and config["gpus"] < 1:
        # Ray shares the GPU but not its memory: hold this trial to its share, so a large
        # sample fails alone with an OOM (recorded) instead of starving its neighbours.
        torch.cuda.set_per_process_memory_fraction(config["gpus"])

    lat_cfg = LatencySettings.from_dict(config["latency"])
    lat_device = lat_cfg.device
    if lat_device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "this study measures latency on cuda, but the worker that got this trial has no "
            "GPU; give trials `resources.gpus` > 0 or measure on cpu"
        )
    model = build_model(arch, num_classes=config["num_classes"], img_size=config["target_img_size"])
    lat = measure_latency(
        model,
        lat_device,
        lat_cfg.batch_size,
        config["target_img_size"],
        warmup=lat_cfg.warmup,
        repeats=lat_cfg.repeats,
        precision=lat_cfg.precision,
        mode=lat_cfg.mode,
        threads=lat_cfg.threads,
        clock=lat_cfg.clock,
    )
    del model
    base = {"latency_ms": lat.median_ms, "latency": lat.to_dict(), "node": _where()}

    budgets = Budgets(max_latency_ms=config.get("max_latency_ms"))
    over = budgets.violations({"latency_ms": lat.median_ms})
    if over:
        reason = f"latency {over[0]} ({lat.device_name})"
        tune.report({"epoch": 0, "accuracy": 0.0, "over_budget": reason, **base})
        return

    data = load_data(DataConfig.from_dict(config["data"]))
    train_cfg = TrainConfig.from_dict(config["train"])
    base["proxy_num_classes"] = data.num_classes
    base["proxy_in_chans"] = data.channels
    if data.info.get("cache_checksum"):  # a cached kind: say which bytes this trial saw
        key = Path(data.info["cache_path"]).name
        base["data_cache"] = {"key": key, "checksum": data.info["cache_checksum"]}
    final: dict[str, Any] = {}

    def report(ep: Any) -> None:
        metrics = {
            "epoch": ep.epoch,
            "accuracy": ep.val_acc,
            "train_loss": ep.train_loss,
            "val_loss": ep.val_loss,
            "lr": ep.lr,
            "epoch_seconds": ep.seconds,
            "epoch_cpu_seconds": ep.cpu_seconds,
            "images_per_s": ep.images_per_s,
            **base,
        }
        if ep.epoch == train_cfg.epochs:
            final.update(metrics)  # reported below, together with the weights
        else:
            tune.report(metrics)

    result = train_proxy(arch, data, train_cfg, device=device, report=report)
    if final:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(result.model.state_dict(), Path(tmp) / "model.pt")
            tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))
