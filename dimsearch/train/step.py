"""The training step and everything it is built from: model, optimiser, schedule, loss.

`prepare` turns an `ArchConfig` plus a `TrainConfig` into a ready `Trainer`: the model on its
device, timm's AdamW (decay only on weight matrices), timm's cosine schedule with a warm-up,
stepped every iteration, and the loss. `Trainer.step` is the one optimisation step; the epoch
loop (`dimsearch.train.loop`) and the throughput benchmark (`dimsearch.train.bench`) both call
it, so what the benchmark measures is what a search trial runs.

GPU rules kept here: bf16 autocast (no grad scaler needed), fused AdamW, no host sync inside
a step (the loss comes back as a device tensor), optional ``torch.compile`` and channels-last.
Nothing reserves GPU memory up front, so several trials can share one device and a memory
fraction set by the caller (``torch.cuda.set_per_process_memory_fraction``) still holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from dimsearch.config import ArchConfig
from dimsearch.errors import TrainingError
from dimsearch.models import build_model
from dimsearch.train.config import TrainConfig

if TYPE_CHECKING:
    from timm.scheduler.scheduler import Scheduler

__all__ = ["Trainer", "autocast", "autocast_dtype", "check_trainable", "prepare", "resolve_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: as given, else CUDA when available, else CPU.

    Raises:
        TrainingError: CUDA was asked for on a machine where torch sees no GPU.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TrainingError(
            f"device must be like 'cpu', 'cuda' or 'cuda:1', got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r} was asked for, but torch sees no CUDA GPU here")
    return dev


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op for plain float32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for plain float32."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


@dataclass
class Trainer:
    """A model with its optimiser, schedule and loss, ready to step.

    Attributes:
        model: the eager module (owns the weights; evaluate and save this one's state).
        forward: what steps and evaluation call: ``model`` itself or its compiled wrapper.
        optimizer: AdamW from timm's factory.
        scheduler: timm ``CosineLRScheduler`` in update units (one update per step).
        loss_fn: training loss (soft-target cross-entropy when mixing, else smoothed CE).
        mixup: timm ``Mixup`` applied to each batch inside the step, or None.
        device: where everything lives.
        amp: autocast dtype, or None for float32.
        clip_grad: max gradient norm, or None.
        updates: optimiser steps taken so far (drives the schedule).
    """

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    loss_fn: nn.Module
    mixup: Callable | None
    device: torch.device
    amp: torch.dtype | None
    clip_grad: float | None
    updates: int = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimisation step on a batch already on the device.

        Returns:
            The batch's training loss as a detached 0-d device tensor; reading it (``.item()``)
            is left to the caller, so a CUDA step never waits for the GPU.
        """
        if not self.model.training:  # cheap check; .train() walks every module
            self.model.train()
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            loss = self.loss_fn(self.forward(x), y)
        loss.backward()
        if self.clip_grad is not None:
            # foreach norm on the device, no sync (error_if_nonfinite would add one)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.optimizer.step()
        self.updates += 1
        self.scheduler.step_update(self.updates)
        return loss.detach()

    @property
    def lr(self) -> float:
        """Current learning rate of the decayed parameter group (all groups share it)."""
        return float(self.optimizer.param_groups[0]["lr"])


def prepare(
    arch: ArchConfig,
    cfg: TrainConfig,
    *,
    num_classes: int,
    img_size: int,
    channels: int,
    steps_per_epoch: int,
    device: str | torch.device | None = None,
) -> Trainer:
    """Build the model and its training machinery for ``cfg.epochs * steps_per_epoch`` steps.

    The model is built for the data (``num_classes``, ``img_size``, ``in_chans=channels``), with
    ``cfg.drop_path`` replacing the architecture's stochastic depth when set. Weights are
    initialised from torch's global generator, so seed it first for a repeatable run.
    """
    device = resolve_device(device)
    check_trainable(arch, img_size)
    changes: dict[str, object] = {"in_chans": channels}
    if cfg.drop_path is not None:
        changes["drop_path_rate"] = cfg.drop_path
    model = build_model(arch.replace(**changes), num_classes=num_classes, img_size=img_size)
    cuda = device.type == "cuda"
    model = model.to(device)
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if cuda and cfg.compile:
        forward = torch.compile(model)
    optimizer = _optimizer(model, cfg, cuda)
    return Trainer(
        model=model,
        forward=forward,
        optimizer=optimizer,
        scheduler=_schedule(optimizer, cfg, steps_per_epoch),
        loss_fn=_loss(cfg),
        mixup=_mixup(cfg, num_classes),
        device=device,
        amp=autocast_dtype(cfg.amp, device),
        clip_grad=cfg.clip_grad,
    )


def check_trainable(arch: ArchConfig, img_size: int) -> None:
    """Reject an architecture that builds at ``img_size`` but cannot train there.

    See `ArchConfig.single_element_attention`. Caught here so a trial fails with the reason,
    not a shape error.

    Raises:
        TrainingError: naming the stage and the resolution.
    """
    i = arch.single_element_attention(img_size)
    if i is not None:
        raise TrainingError(
            f"stage {i + 1} uses head interaction on a 1x1 token grid at img_size="
            f"{img_size}: its instance norm over a one-element attention map cannot train; "
            f"use a larger data.img_size"
        )


def _optimizer(model: nn.Module, cfg: TrainConfig, cuda: bool) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    # filter_bias_and_bn exempts 1-d params (biases, norm scales); timm also reads
    # model.no_weight_decay() (position maps, class tokens). Fused AdamW is one kernel per
    # step on CUDA; on CPU torch's default for-loop implementation keeps runs repeatable.
    extra = {"fused": True} if cuda else {}
    return create_optimizer_v2(
        model,
        "adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        filter_bias_and_bn=True,
        **extra,
    )


def _schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> Scheduler:
    from timm.scheduler import CosineLRScheduler

    # Per-iteration, not per-epoch: a proxy run has few epochs, and an epoch-stepped warm-up
    # of one epoch in three would jump from min_lr straight to the peak.
    total = cfg.epochs * steps_per_epoch
    warmup = min(math.ceil(cfg.warmup_epochs * steps_per_epoch), total // 2)
    return CosineLRScheduler(
        optimizer,
        t_initial=max(total - warmup, 1),
        lr_min=cfg.min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.min_lr,
        warmup_prefix=True,  # cosine starts after the warm-up and ends at the last step
        t_in_epochs=False,
    )


def _loss(cfg: TrainConfig) -> nn.Module:
    if cfg.mixes:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()  # timm's Mixup already smooths the soft targets
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def _mixup(cfg: TrainConfig, num_classes: int) -> Callable | None:
    if not cfg.mixes:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        label_smoothing=cfg.label_smoothing,
        num_classes=num_classes,
    )
