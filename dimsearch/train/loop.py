"""`train_proxy`: train one architecture briefly and report held-out accuracy every epoch.

This is what a search trial runs. Each epoch is: training steps (`Trainer.step`) over the
device-resident training split, then an evaluation pass over the validation split; the epoch's
figures go to ``report`` (Ray Tune's ``tune.report`` in a search), which may stop the run.

Divergence is caught without slowing the GPU: every step's loss is written into a small
device buffer and the buffer is checked for non-finite values every step on CPU (free) and
every `CUDA_CHECK_EVERY` steps on CUDA (one host sync per check), so a diverging run stops
within a few seconds with the exact epoch, step and loss.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dimsearch.config import ArchConfig
from dimsearch.cost import training_slot
from dimsearch.errors import TrainingError
from dimsearch.train.config import TrainConfig
from dimsearch.train.step import Trainer, autocast, prepare, resolve_device

if TYPE_CHECKING:
    from dimsearch.data import DeviceLoader, ProxyData

__all__ = [
    "CUDA_CHECK_EVERY",
    "EpochResult",
    "TrainResult",
    "evaluate",
    "proxy_loader",
    "train_proxy",
]

# Steps between divergence checks on CUDA: one sync per 50 steps costs nothing measurable and
# still stops a diverged run within seconds.
CUDA_CHECK_EVERY = 50


@dataclass(frozen=True)
class EpochResult:
    """Figures of one finished epoch.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training loss over the epoch's steps (with smoothing / mixing).
        val_loss: mean plain cross-entropy on the validation split.
        val_acc: top-1 accuracy on the validation split, in percent.
        lr: learning rate after the epoch's last step.
        seconds: wall time of the epoch, training and evaluation.
        images_per_s: training throughput (evaluation excluded).
        cpu_seconds: CPU time of this process over the epoch. On a shared machine it barely
            moves when other processes compete for the cores, unlike ``seconds``, so replays of
            a recorded sample (`bench search`) can use it as the epoch's cost.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """Outcome of one proxy training.

    Attributes:
        curve: one `EpochResult` per epoch run.
        epochs_run: ``len(curve)``; fewer than planned when stopped early.
        final_acc: validation top-1 (%) after the last epoch run.
        best_acc: best validation top-1 (%) over the epochs run.
        seconds: wall time of the whole run, model building included.
        stopped_early: ``report`` asked to stop before the planned epochs ended.
        device: where it ran, e.g. ``"cpu"`` or ``"cuda"``.
    """

    curve: list[EpochResult] = field(default_factory=list)
    epochs_run: int = 0
    final_acc: float = 0.0
    best_acc: float = 0.0
    seconds: float = 0.0
    stopped_early: bool = False
    device: str = "cpu"
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the curve as a list of dicts)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("curve", "model")
        }
        out["curve"] = [e.to_dict() for e in self.curve]
        return out


def train_proxy(
    arch: ArchConfig,
    data: ProxyData,
    cfg: TrainConfig,
    *,
    device: str | torch.device | None = None,
    report: Callable[[EpochResult], bool | None] | None = None,
) -> TrainResult:
    """Train ``arch`` on ``data`` with ``cfg`` and evaluate it after every epoch.

    The model is built for the data: ``data.num_classes`` outputs, ``data.img_size`` input and
    ``in_chans=data.channels``. torch's, numpy's and Python's global generators are seeded
    with ``cfg.seed`` (timm's Mixup draws from numpy's), so on CPU the same seed gives the
    same curve, float for float.

    Args:
        arch: the architecture to train.
        data: a prepared proxy dataset (`dimsearch.data.load_data`).
        cfg: training settings.
        device: where to train; default CUDA when available, else CPU.
        report: called after every epoch with its figures; returning True stops the run
            (``stopped_early`` is set when that leaves planned epochs unrun). Exceptions it
            raises (a pruner's, say) propagate.

    Returns:
        The accuracy curve and summary.

    Raises:
        TrainingError: the loss became non-finite (naming epoch, step and value), the
            architecture cannot train at ``data.img_size``, or ``device`` is not available.
        ArchError: the architecture does not fit ``data.img_size``.
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    with _threads(cfg.num_threads):
        _seed_everything(cfg.seed)
        loaders = proxy_loader(data, "train", cfg, dev), proxy_loader(data, "val", cfg, dev)
        trainer = prepare(
            arch,
            cfg,
            num_classes=data.num_classes,
            img_size=data.img_size,
            channels=data.channels,
            steps_per_epoch=len(loaders[0]),
            device=dev,
        )
        result = TrainResult(device=str(dev))
        for epoch in range(1, cfg.epochs + 1):
            # Each epoch holds the device shared and lets a latency measurement on this node
            # go first: the measurement waits at most one epoch and never overlaps training.
            with training_slot(dev):
                ep = _run_epoch(trainer, *loaders, epoch)
            result.curve.append(ep)
            if report is not None and report(ep):
                result.stopped_early = epoch < cfg.epochs
                break
    result.model = trainer.model.eval()
    result.epochs_run = len(result.curve)
    result.final_acc = result.curve[-1].val_acc
    result.best_acc = max(e.val_acc for e in result.curve)
    result.seconds = time.perf_counter() - start
    return result


@torch.inference_mode()
def evaluate(trainer: Trainer, loader: DeviceLoader) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (%) of the model over ``loader``.

    Sums stay on the device until the end, so a CUDA evaluation syncs once.
    """
    trainer.model.eval()
    loss_sum = torch.zeros((), device=trainer.device)
    correct = torch.zeros((), device=trainer.device, dtype=torch.int64)
    count = 0
    for x, y in loader:
        with autocast(trainer.device, trainer.amp):
            logits = trainer.forward(x)
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
        count += y.shape[0]
    if count == 0:
        raise TrainingError("the validation split is empty; there is nothing to evaluate on")
    return loss_sum.item() / count, 100.0 * correct.item() / count


# -- pieces --------------------------------------------------------------------------------------


def _run_epoch(trainer: Trainer, train: DeviceLoader, val: DeviceLoader, epoch: int) -> EpochResult:
    start = time.perf_counter()
    cpu_start = time.process_time()
    train.set_epoch(epoch)
    log = _LossLog(len(train), trainer.device, epoch)
    images = 0
    for x, y in train:
        log.add(trainer.step(x, y))
        images += x.shape[0]
        log.maybe_check()
    log.check()
    train_loss = log.mean()  # syncs, so the training time below is complete on CUDA
    train_seconds = time.perf_counter() - start
    val_loss, val_acc = evaluate(trainer, val)
    return EpochResult(
        epoch=epoch,
        train_loss=train_loss,
        val_loss=val_loss,
        val_acc=val_acc,
        lr=trainer.lr,
        seconds=time.perf_counter() - start,
        images_per_s=images / train_seconds if train_seconds > 0 else 0.0,
        cpu_seconds=time.process_time() - cpu_start,
    )


class _LossLog:
    """Per-step losses of one epoch, kept on the device and checked for divergence."""

    def __init__(self, steps: int, device: torch.device, epoch: int) -> None:
        self.buf = torch.zeros(steps, device=device)
        self.epoch = epoch
        self.steps = steps
        self.every = CUDA_CHECK_EVERY if device.type == "cuda" else 1
        self.n = 0
        self.checked = 0

    def add(self, loss: torch.Tensor) -> None:
        self.buf[self.n] = loss  # a device-to-device copy: no sync
        self.n += 1

    def maybe_check(self) -> None:
        if self.n - self.checked >= self.every:
            self.check()

    def check(self) -> None:
        """Raise `TrainingError` naming the first non-finite loss since the last check."""
        window = self.buf[self.checked : self.n]
        bad = (~torch.isfinite(window)).nonzero()
        if bad.numel():
            i = int(bad[0])
            raise TrainingError(
                f"training loss is {float(window[i])} at epoch {self.epoch}, step "
                f"{self.checked + i + 1} of {self.steps}: the run diverged; lower train.lr or "
                f"set train.clip_grad"
            )
        self.checked = self.n

    def mean(self) -> float:
        return float(self.buf[: self.n].mean()) if self.n else float("nan")


def proxy_loader(
    data: ProxyData, split: str, cfg: TrainConfig, device: torch.device
) -> DeviceLoader:
    """The loader `train_proxy` reads ``split`` (``"train"`` or ``"val"``) of ``data`` through;
    the throughput benchmark uses the same one, so it times what a trial runs.

    Training batches are full ones only (the loader keeps a lone short one): a constant shape
    keeps compiled graphs from recompiling and timm's Mixup (even batches) happy.

    Raises:
        TrainingError: mixing is on and the training split makes one batch of odd size.
    """
    from dimsearch.data import DeviceLoader

    train = split == "train"
    if train and cfg.mixes and min(len(data.train), cfg.batch_size) % 2:
        raise TrainingError(
            f"mixup/cutmix need an even batch, but the training split's {len(data.train)} "
            f"images make one batch of that odd size; use an even number of images"
        )
    return DeviceLoader(
        getattr(data, split),
        cfg.batch_size,
        device,
        train=train,
        mean=data.mean,
        std=data.std,
        augment=cfg.augment if train else "none",
        seed=cfg.seed,
        drop_last=train,
        channels_last=device.type == "cuda" and cfg.channels_last,
    )


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed)
    random.seed(seed)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` CPU threads, restoring the previous count after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
