"""`bench_train`: is proxy training as fast as the hardware allows?

Three variants run in one process, interleaved so that clock changes and neighbours' load
hit them alike:

* **ours** — the whole proxy step: packed synthetic data through `DeviceLoader` (augmented
  on the device), our model, `Trainer.step` exactly as `train_proxy` runs it;
* **random** — the same `Trainer.step` fed pre-made tensors already on the device; ours /
  random is the cost of the data path (target >= 0.9);
* **timm** — a plain eager timm loop (timm's own model, AdamW fused on CUDA, bf16 autocast on
  CUDA, cross-entropy, pre-made tensors); ours / timm says whether our generated model and
  step lose anything against the reference implementation. PiT only: ResT has no timm model.

Model-FLOPs utilisation (MFU) = 6 x multiply-adds per image x images/s / peak FLOP/s, the
usual estimate (forward 2 FLOPs per multiply-add, backward twice the forward); on CPU, and on
GPUs missing from `PEAK_FLOPS`, it is not given.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dimsearch._values import is_int
from dimsearch.errors import TrainingError
from dimsearch.train.config import TrainConfig
from dimsearch.train.step import (
    autocast,
    autocast_dtype,
    check_trainable,
    prepare,
    resolve_device,
)

__all__ = ["PEAK_FLOPS", "TrainBench", "bench_train", "peak_flops"]

# Dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, matched against
# torch.cuda.get_device_name() in order (so "H100 PCIe" wins over "H100").
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)


# classes of the synthetic data (the data module's default) and batches it holds: enough
# that the loader reshuffles now and then, small enough for a shared GPU
_CLASSES = 10
_BATCHES_OF_DATA = 2


@dataclass(frozen=True)
class TrainBench:
    """Figures of one `bench_train` run (throughputs in images/s).

    ``ratio_data`` = ours / random, ``ratio_timm`` = ours / timm; ``mfu_*`` are fractions of
    the GPU's peak. Fields that do not apply (no timm model, CPU) are None; ``notes`` says why.
    """

    model: str
    timm_model: str | None
    device: str
    device_name: str
    img_size: int
    batch: int
    steps: int
    warmup_steps: int
    amp: str
    compile: bool
    ours: float
    random: float
    timm: float | None
    ratio_data: float
    ratio_timm: float | None
    macs_per_image: int
    timm_macs_per_image: int | None
    peak_flops: float | None
    mfu_ours: float | None
    mfu_random: float | None
    mfu_timm: float | None
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device from `PEAK_FLOPS`, or None if unknown/CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


def bench_train(
    model: str = "pit_ti",
    img_size: int = 128,
    *,
    batch: int | None = None,
    steps: int | None = None,
    warmup_steps: int | None = None,
    device: str | torch.device | None = None,
    compile: bool = False,
    channels_last: bool = False,
) -> TrainBench:
    """Measure proxy-training throughput against its two references (see module docstring).

    Args:
        model: zoo name.
        img_size: square input size.
        batch: images per step; default 1024 on CUDA, 64 on CPU.
        steps: timed steps per variant; default 50 on CUDA, 10 on CPU.
        warmup_steps: untimed steps per variant first (allocator, autotuning, compile);
            default 10 on CUDA, 2 on CPU.
        device: default CUDA when available.
        compile: ``torch.compile`` our model (CUDA only, as in training).
        channels_last: channels-last images and model (CUDA only, as in training).

    Raises:
        TrainingError: a non-positive count.
        ArchError: unknown model, or one that does not fit ``img_size``.
    """
    from dimsearch import zoo

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    batch = batch if batch is not None else (1024 if cuda else 64)
    steps = steps if steps is not None else (50 if cuda else 10)
    warmup_steps = warmup_steps if warmup_steps is not None else (10 if cuda else 2)
    _check_counts(batch=batch, steps=steps, warmup_steps=warmup_steps)
    cfg = TrainConfig(batch_size=batch, compile=compile, channels_last=channels_last)
    arch = zoo.get(model)  # unknown names and sizes the model cannot train at fail here,
    check_trainable(arch, img_size)  # before any data is made
    torch.manual_seed(0)

    loader = _synthetic_loader(img_size, dev, cfg)
    trainer = prepare(
        arch,
        cfg,
        num_classes=_CLASSES,
        img_size=img_size,
        channels=3,
        steps_per_epoch=len(loader),
        device=dev,
    )
    x, y = _random_batch(batch, img_size, dev, cfg)
    batches = _cycle(loader)
    variants: dict[str, Callable[[], object]] = {
        "ours": lambda: trainer.step(*next(batches)),
        "random": lambda: trainer.step(x, y),
    }
    notes = []
    timm_name = zoo.info(model).timm
    timm_model = None
    if timm_name is None:
        notes.append(f"{model} has no timm equivalent (PiT only); the timm reference is skipped")
    else:
        timm_model, timm_step = _timm_loop(timm_name, img_size, cfg, dev)
        variants["timm"] = lambda: timm_step(x, y)

    rates = _interleaved(variants, steps, warmup_steps, batch, dev)

    macs = _macs(trainer.model, img_size)
    timm_macs = _macs(timm_model, img_size) if timm_model is not None else None
    peak = peak_flops(dev)
    if peak is None:
        notes.append("MFU n/a: " + ("CPU run" if not cuda else "GPU missing from PEAK_FLOPS"))

    def mfu(rate: float | None, m: int | None) -> float | None:
        return None if rate is None or m is None or peak is None else 6 * m * rate / peak

    timm_rate = rates.get("timm")
    return TrainBench(
        model=model,
        timm_model=timm_name,
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if cuda else "cpu",
        img_size=img_size,
        batch=batch,
        steps=steps,
        warmup_steps=warmup_steps,
        amp=str(trainer.amp).removeprefix("torch.") if trainer.amp else "float32",
        compile=cuda and compile,
        ours=rates["ours"],
        random=rates["random"],
        timm=timm_rate,
        ratio_data=rates["ours"] / rates["random"],
        ratio_timm=rates["ours"] / timm_rate if timm_rate else None,
        macs_per_image=macs,
        timm_macs_per_image=timm_macs,
        peak_flops=peak,
        mfu_ours=mfu(rates["ours"], macs),
        mfu_random=mfu(rates["random"], macs),
        mfu_timm=mfu(timm_rate, timm_macs),
        notes=tuple(notes),
    )


# -- pieces --------------------------------------------------------------------------------------


def _check_counts(**counts: int) -> None:
    for name, n in counts.items():
        minimum = 0 if name == "warmup_steps" else 1
        if not is_int(n) or n < minimum:
            raise TrainingError(f"bench {name} must be an integer >= {minimum}, got {n!r}")


def _synthetic_loader(img_size: int, device: torch.device, cfg: TrainConfig) -> Any:
    """The training loader of `train_proxy`, over packed synthetic images holding a few
    batches."""
    from dimsearch.data import DataConfig, load_data
    from dimsearch.train.loop import proxy_loader

    per_class = math.ceil(_BATCHES_OF_DATA * cfg.batch_size / _CLASSES)
    data = load_data(
        DataConfig(
            kind="synthetic",
            img_size=img_size,
            num_classes=_CLASSES,
            train_per_class=per_class,
            val_per_class=1,
        )
    )
    return proxy_loader(data, "train", cfg, device)


def _cycle(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches: a new epoch (and shuffle) whenever the loader runs out."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def _random_batch(
    batch: int, img_size: int, device: torch.device, cfg: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    if device.type == "cuda" and cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, _CLASSES, (batch,), device=device)


def _timm_loop(
    name: str, img_size: int, cfg: TrainConfig, device: torch.device
) -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """timm's model and the textbook eager step: no clipping, no smoothing, no schedule."""
    import timm

    model = timm.create_model(name, img_size=img_size, num_classes=_CLASSES).to(device)
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cuda or None
    )
    dtype = autocast_dtype(cfg.amp, device)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return model, step


def _interleaved(
    variants: dict[str, Callable[[], object]],
    steps: int,
    warmup_steps: int,
    batch: int,
    device: torch.device,
) -> dict[str, float]:
    """Images/s of each variant, timed in rounds that rotate the order of the variants."""
    for fn in variants.values():
        for _ in range(warmup_steps):
            fn()
    names = list(variants)
    rounds = min(steps, 5)
    chunks = [steps // rounds + (i < steps % rounds) for i in range(rounds)]
    seconds = dict.fromkeys(names, 0.0)
    for r, n in enumerate(chunks):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            seconds[name] += _timed(variants[name], n, device)
    return {name: steps * batch / seconds[name] for name in names}


def _timed(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Wall seconds of ``n`` calls, the GPU drained before and after."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _macs(model: nn.Module, img_size: int) -> int:
    """Multiply-adds of one image's forward pass (fvcore, attention included)."""
    from dimsearch.cost import count_flops

    return int(count_flops(model, img_size))
