"""Inference latency of a built model, with everything needed to know how it was taken.

A latency figure means nothing without its device, batch, threads, precision and software, so
`LatencyResult` carries them all and serialises with them.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dimsearch._values import is_int
from dimsearch.cost._inputs import image_size
from dimsearch.cost._inputs import in_chans as _model_in_chans

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["LatencyResult", "measure_latency"]

# Defaults per device type: CPU latency is a batch-1 question (a single image on a laptop or
# server); on a GPU a batch of 128 is the throughput regime the papers report.
_DEFAULT_BATCH = {"cpu": 1, "cuda": 128}


@dataclass(frozen=True)
class LatencyResult:
    """Timings of repeated forward passes and the conditions they were taken under.

    Attributes:
        median_ms: median time of one forward pass of the whole batch.
        p10_ms, p90_ms: 10th and 90th percentiles (linear interpolation), for the spread.
        mean_ms, min_ms: mean and fastest pass.
        repeats, warmup: timed passes and untimed warm-up passes.
        batch_size: images per pass.
        img_size: input (H, W).
        throughput: images per second at the median.
        device: torch device string (``cpu``, ``cuda:0``).
        device_name: CPU model or GPU name.
        num_threads: torch intra-op threads (matters on CPU).
        dtype: compute precision: the autocast dtype if any, else the parameters'.
        torch_version: the torch that ran it.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    warmup: int
    batch_size: int
    img_size: tuple[int, int]
    throughput: float
    device: str
    device_name: str
    num_threads: int
    dtype: str
    torch_version: str

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (``img_size`` as a list)."""
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d


def measure_latency(
    model: nn.Module,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    img_size: int | tuple[int, int] = 224,
    *,
    warmup: int = 10,
    repeats: int = 50,
    amp_dtype: torch.dtype | None = None,
) -> LatencyResult:
    """Time ``repeats`` inference passes of ``model`` on ``device`` after ``warmup`` passes.

    Runs under ``torch.inference_mode`` in eval mode. On CPU each pass is timed with
    ``time.perf_counter``; on CUDA with CUDA events around each pass and a synchronize, so
    asynchronous kernel launches are not mistaken for finished work.

    The model is moved to ``device`` in place (``model.to(device)``) and stays there: copying
    a large model just to time it would double its memory on the device. Its training mode
    is restored afterwards.

    Args:
        model: any module taking one image batch.
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        batch_size: images per pass; by default 1 on CPU and 128 on CUDA.
        img_size: input size, ``int`` for square or ``(H, W)``.
        warmup: untimed passes first (allocator, kernel selection, caches).
        repeats: timed passes.
        amp_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``);
            ``None`` runs in the parameters' precision.

    Returns:
        The timings and the conditions they were taken under.
    """
    import torch

    dev = torch.device(device)
    if batch_size is None:
        batch_size = _DEFAULT_BATCH.get(dev.type, 1)
    _check_count("batch_size", batch_size, minimum=1)
    _check_count("repeats", repeats, minimum=1)
    _check_count("warmup", warmup, minimum=0)
    h, w = image_size(img_size)
    x = torch.randn(batch_size, _model_in_chans(model), h, w, device=dev)
    was_training = {m: m.training for m in model.modules()}
    model.to(dev).eval()
    try:
        times = _time_passes(model, x, dev, warmup, repeats, amp_dtype)
    finally:
        for module, mode in was_training.items():
            module.training = mode
    return _result(times, model, dev, batch_size, (h, w), warmup, amp_dtype)


def _check_count(name: str, value: Any, *, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _time_passes(
    model: nn.Module,
    x: torch.Tensor,
    dev: torch.device,
    warmup: int,
    repeats: int,
    amp_dtype: torch.dtype | None,
) -> list[float]:
    """Milliseconds of each timed pass."""
    import contextlib

    import torch

    autocast = (
        torch.autocast(dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    timer = _cuda_timer(dev) if dev.type == "cuda" else _cpu_timer
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return [timer(lambda: model(x)) for _ in range(repeats)]


def _cpu_timer(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1e3


def _cuda_timer(dev: torch.device) -> Callable[[Callable[[], Any]], float]:
    import torch

    def timer(step: Callable[[], Any]) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize(dev)
        return start.elapsed_time(end)

    return timer


def _percentile(sorted_ms: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), defined for a single sample too."""
    pos = (len(sorted_ms) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def _result(
    times: list[float],
    model: nn.Module,
    dev: torch.device,
    batch_size: int,
    size: tuple[int, int],
    warmup: int,
    amp_dtype: torch.dtype | None,
) -> LatencyResult:
    import torch

    ordered = sorted(times)
    median = statistics.median(ordered)
    param = next(model.parameters(), None)
    dtype = amp_dtype if amp_dtype is not None else (param.dtype if param is not None else None)
    return LatencyResult(
        median_ms=median,
        p10_ms=_percentile(ordered, 0.1),
        p90_ms=_percentile(ordered, 0.9),
        mean_ms=statistics.fmean(ordered),
        min_ms=ordered[0],
        repeats=len(times),
        warmup=warmup,
        batch_size=batch_size,
        img_size=size,
        throughput=batch_size / (median / 1e3) if median > 0 else float("inf"),
        device=str(dev),
        device_name=_device_name(dev),
        num_threads=torch.get_num_threads(),
        dtype=str(dtype).removeprefix("torch.") if dtype is not None else "float32",
        torch_version=torch.__version__,
    )


def _device_name(dev: torch.device) -> str:
    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return _cpu_name()
    return dev.type


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"
