"""Inference latency of a built model, with everything needed to know how it was taken.

A latency figure means nothing without its device, batch, threads, precision and software, so
`LatencyResult` carries them all and serialises with them. Every timed pass runs under
`measuring`: the node's measurement lock (`dimsearch.cost._lock`), the settings' threads,
inference mode and the precision's autocast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dimsearch._rules import Rule, Where, check_fields
from dimsearch.cost._inputs import image_size
from dimsearch.cost._inputs import in_chans as _model_in_chans
from dimsearch.errors import LatencyError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CLOCKS",
    "LATENCY_RULES",
    "MODES",
    "PRECISIONS",
    "LatencyResult",
    "LatencySettings",
    "measure_latency",
    "software_versions",
    "time_interleaved",
]

# Defaults per device type: CPU latency is a batch-1 question (a single image on a laptop or
# server); on a GPU a batch of 128 is the throughput regime the papers report.
_DEFAULT_BATCH = {"cpu": 1, "cuda": 128}
# Throughput is quoted at batch 128 whatever the device (the PiT paper's images/s).
_THROUGHPUT_BATCH = 128

# Precision name -> torch dtype name of the autocast (None: the parameters' own, float32).
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
_PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# What the headline figure is: ms per batch, or images per second.
MODES = ("latency", "throughput")
# What a pass is timed with: elapsed time, or the measuring thread's CPU time. On a shared
# machine a pass of 50 ms is time-sliced with the other runnable processes and a pass of
# 0.5 ms mostly is not, so elapsed time inflates long passes by the load; CPU time does not.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


# The device a figure is taken on: a kind, or one CUDA device of several.
_DEVICE_RE = re.compile(r"cpu|cuda(:[0-9]+)?")

# The rule of each key of `LatencySettings` (`dimsearch._rules`): a space's ``latency:`` section
# is checked against it when loaded (`dimsearch.search.settings`), and every `LatencySettings`
# made in Python when made, so the file, the command line and the code share one rule.
LATENCY_RULES = {
    "device": Rule(
        "str",
        text="'cpu', 'cuda' or 'cuda:N'",
        test=lambda v: _DEVICE_RE.fullmatch(v) is not None,
        schema_extra={"pattern": "^(cpu|cuda(:[0-9]+)?)$"},
    ),
    "batch_size": Rule(
        "int",
        low=1,
        high=4096,
        optional=True,
        text="an integer in [1, 4096], or null for the device's batch (1 on cpu, 128 on cuda or in "
        "throughput mode)",
    ),
    "repeats": Rule("int", low=1, high=10_000),
    "warmup": Rule("int", low=0, high=10_000),
    "precision": Rule("choice", choices=tuple(PRECISIONS)),
    "mode": Rule("choice", choices=MODES),
    "threads": Rule("int", low=1, high=1024, optional=True),
    "clock": Rule("choice", choices=tuple(CLOCKS)),
    "predict": Rule("bool"),
}


@dataclass(frozen=True)
class LatencySettings:
    """How a latency figure is taken; torch-free, checked by `LATENCY_RULES` when made.

    The one settings type of latency: a space's ``latency:`` section is one (every trial
    measures with it), and so are `measure_latency`'s arguments and a `LatencyTable`'s key.

    Attributes:
        device: ``cpu``, ``cuda`` or ``cuda:N`` (a space names a kind: ``cpu`` or ``cuda``).
        batch_size: images per pass; None = 128 for ``throughput``, else 1 on CPU and 128 on
            CUDA (`batch`).
        precision: ``fp32`` (the parameters' own), ``bf16`` or ``fp16`` (autocast).
        mode: ``latency`` (ms per batch) or ``throughput`` (images/s): which figure leads.
        threads: torch intra-op threads for the measurement (restored after); None leaves
            the process's setting (a trial runs with one thread per CPU it was given).
        warmup: untimed passes first.
        repeats: timed passes.
        clock: ``wall`` (elapsed time: what a user waits) or ``cpu`` (the measuring
            thread's CPU time: what the model costs when the cores are shared with other
            processes). ``cpu`` needs device ``cpu`` and ``threads: 1``, since the work of
            other threads would be missed.
        predict: for a search: predict each sample's latency from the part table before it
            is built (`dimsearch.search.gate`); measuring ignores it.
    """

    device: str = "cpu"
    batch_size: int | None = None
    repeats: int = 10
    warmup: int = 3
    precision: str = "fp32"
    mode: str = "latency"
    threads: int | None = None
    clock: str = "wall"
    predict: bool = True

    def __post_init__(self) -> None:
        check_fields(self, LATENCY_RULES, Where(path="latency", raises=LatencyError))
        if self.clock == "cpu" and (device_type(self.device) != "cpu" or self.threads != 1):
            raise LatencyError(
                f"latency.clock 'cpu' times the measuring thread alone, so it needs device "
                f"'cpu' and threads 1, got device={self.device!r}, threads={self.threads!r}"
            )

    @property
    def batch(self) -> int:
        """The batch size, defaults resolved."""
        if self.batch_size is not None:
            return self.batch_size
        if self.mode == "throughput":
            return _THROUGHPUT_BATCH
        return _DEFAULT_BATCH.get(device_type(self.device), 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencySettings:
        """From a mapping with some of the fields (a space's ``latency:`` section, a
        table's record); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LatencyError(
                f"latency has unknown keys {unknown}; known keys are {sorted(known)}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_type(device: Any) -> str:
    """``cpu`` of ``"cpu"``, ``cuda`` of ``"cuda:1"`` or of a ``torch.device``."""
    return str(getattr(device, "type", device)).split(":", 1)[0]


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
        precision: ``fp32``, ``bf16`` or ``fp16`` (the settings' name for ``dtype``).
        mode: ``latency`` or ``throughput``: which figure leads (`figure`).
        software: versions that ran it (``torch``, ``dimsearch``).
        clock: ``wall`` (elapsed) or ``cpu`` (the measuring thread's CPU time).

    Records stored before ``precision``, ``mode``, ``software`` and ``clock`` existed load through
    `from_dict` with those derived from ``dtype`` or left at their defaults.
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
    precision: str = "fp32"
    mode: str = "latency"
    software: Mapping[str, str] = field(default_factory=dict, hash=False)
    clock: str = "wall"

    @property
    def figure(self) -> float:
        """The headline figure: median ms per batch, or images/s in ``throughput`` mode."""
        return self.throughput if self.mode == "throughput" else self.median_ms

    @property
    def unit(self) -> str:
        return "images/s" if self.mode == "throughput" else "ms"

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (``img_size`` as a list)."""
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        d["software"] = dict(self.software)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyResult:
        """Rebuild from `to_dict` output, old records (without precision, mode, software)
        included; unknown keys are ignored, so a newer record loads in an older reader."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in data.items() if k in known}
        d["img_size"] = tuple(d.get("img_size", (0, 0)))
        if "precision" not in d:
            d["precision"] = _PRECISION_OF_DTYPE.get(str(d.get("dtype")), str(d.get("dtype")))
        if "software" not in d and "torch_version" in d:
            d["software"] = {"torch": d["torch_version"]}
        return cls(**d)


def software_versions() -> dict[str, str]:
    """The versions a figure depends on: torch (kernels) and dimsearch (the layers)."""
    import torch

    import dimsearch

    return {"torch": torch.__version__, "dimsearch": dimsearch.__version__}


def measure_latency(
    model: nn.Module,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    img_size: int | tuple[int, int] = 224,
    *,
    warmup: int = 10,
    repeats: int = 50,
    amp_dtype: torch.dtype | None = None,
    precision: str | None = None,
    mode: str = "latency",
    threads: int | None = None,
    clock: str = "wall",
    lock: bool = True,
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
        batch_size: images per pass; by default 128 in ``throughput`` mode, else 1 on CPU and
            128 on CUDA.
        img_size: input size, ``int`` for square or ``(H, W)``.
        warmup: untimed passes first (allocator, kernel selection, caches).
        repeats: timed passes.
        amp_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``);
            ``None`` runs in the parameters' precision. Prefer ``precision``.
        precision: ``fp32``, ``bf16`` or ``fp16``; the last two run under autocast.
        mode: ``latency`` or ``throughput``: which figure the result leads with.
        threads: torch intra-op threads while measuring (restored after); None leaves them.
        clock: ``wall`` or ``cpu`` (`LatencySettings.clock`).
        lock: hold the node's measurement lock for ``device`` (`measurement_lock`), so no
            training on this node overlaps the timed passes.

    Returns:
        The timings and the conditions they were taken under.

    Raises:
        LatencyError: a setting breaks a rule, or the device cannot run ``precision``.
    """
    import torch

    dev = torch.device(device)
    settings = LatencySettings(
        device=str(dev),
        batch_size=batch_size,
        precision=_precision_name(precision, amp_dtype),
        mode=mode,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        clock=clock,
    )
    batch_size = settings.batch
    h, w = image_size(img_size)
    x = torch.randn(batch_size, _model_in_chans(model), h, w, device=dev)
    was_training = {m: m.training for m in model.modules()}
    model.to(dev).eval()
    try:
        with measuring(settings, lock=lock):
            times = time_interleaved(
                [lambda: model(x)], dev, warmup=warmup, rounds=repeats, clock=clock
            )[0]
            num_threads = torch.get_num_threads()
    finally:
        for module, was in was_training.items():
            module.training = was
    param = next(model.parameters(), None)
    dtype = PRECISIONS[settings.precision] or (
        str(param.dtype).removeprefix("torch.") if param is not None else "float32"
    )
    return _result(times, dev, settings, (h, w), num_threads, dtype)


def _precision_name(precision: str | None, amp_dtype: torch.dtype | None) -> str:
    if amp_dtype is None:
        return "fp32" if precision is None else precision
    name = _PRECISION_OF_DTYPE.get(str(amp_dtype).removeprefix("torch."))
    if name is None:
        raise LatencyError(
            f"amp_dtype must be one of torch.bfloat16, torch.float16, torch.float32, "
            f"got {amp_dtype}"
        )
    if precision is not None and precision != name:
        raise LatencyError(
            f"precision={precision!r} and amp_dtype={amp_dtype} disagree; give one of them"
        )
    return name


@contextmanager
def measuring(settings: LatencySettings, *, lock: bool = True) -> Iterator[None]:
    """The conditions every timed pass runs under: the node's measurement lock, the settings'
    threads, ``inference_mode`` and the precision's autocast.

    Raises:
        LatencyError: the device type cannot autocast to the precision (checked by trying).
    """
    import torch

    from dimsearch.cost._lock import measurement_lock

    dev = torch.device(settings.device)
    with ExitStack() as stack:
        if lock:
            stack.enter_context(measurement_lock(dev))
        if settings.threads is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(settings.threads)
            stack.callback(torch.set_num_threads, before)
        stack.enter_context(torch.inference_mode())
        stack.enter_context(_autocast(dev, settings.precision))
        yield


def _autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision``, refusing one the device type does not support (torch
    would only warn and run in float32, and the figure would be mislabelled)."""
    import torch

    dtype_name = PRECISIONS[precision]
    if dtype_name is None:
        return contextlib.nullcontext()
    dtype = getattr(torch, dtype_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = torch.autocast(dev.type, dtype=dtype)
        with probe:
            supported = torch.is_autocast_enabled(dev.type)
    if dev.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        supported = False
    if not supported:
        raise LatencyError(
            f"precision {precision!r} is not supported on {dev.type} by torch "
            f"{torch.__version__} (autocast to {dtype_name} is refused); use fp32"
            + (" or bf16" if dev.type == "cpu" else "")
        )
    return torch.autocast(dev.type, dtype=dtype)


def time_interleaved(
    passes: Sequence[Callable[[], Any]],
    device: torch.device,
    *,
    warmup: int,
    rounds: int,
    clock: str = "wall",
) -> list[list[float]]:
    """Milliseconds of ``rounds`` timed calls of each of ``passes``, taken round-robin.

    Each pass is called ``warmup`` times untimed first. Then every round times each pass once,
    in turn, so a burst of load from outside lands on every pass alike instead of on whichever
    was being timed, and each pass starts with the caches its neighbours left, as a layer
    does inside a model. Call it inside `measuring`.
    """
    import torch

    timer = _cuda_timer(device) if device.type == "cuda" else _cpu_timer(CLOCKS[clock])
    for step in passes:
        for _ in range(warmup):
            step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times: list[list[float]] = [[] for _ in passes]
    for _ in range(rounds):
        for step, out in zip(passes, times, strict=True):
            out.append(timer(step))
    return times


def _cpu_timer(now: Callable[[], float]) -> Callable[[Callable[[], Any]], float]:
    def timer(step: Callable[[], Any]) -> float:
        start = now()
        step()
        return (now() - start) * 1e3

    return timer


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
    dev: torch.device,
    settings: LatencySettings,
    size: tuple[int, int],
    num_threads: int,
    dtype: str,
) -> LatencyResult:
    import torch

    ordered = sorted(times)
    median = statistics.median(ordered)
    batch = settings.batch
    return LatencyResult(
        median_ms=median,
        p10_ms=_percentile(ordered, 0.1),
        p90_ms=_percentile(ordered, 0.9),
        mean_ms=statistics.fmean(ordered),
        min_ms=ordered[0],
        repeats=len(times),
        warmup=settings.warmup,
        batch_size=batch,
        img_size=size,
        throughput=batch / (median / 1e3) if median > 0 else float("inf"),
        device=str(dev),
        device_name=device_name(dev),
        num_threads=num_threads,
        dtype=dtype,
        torch_version=torch.__version__,
        precision=settings.precision,
        mode=settings.mode,
        software=software_versions(),
        clock=settings.clock,
    )


def device_name(dev: torch.device) -> str:
    """The CPU model or GPU name of ``dev``."""
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


def local_device_names(kind: str) -> list[str]:
    """The CPU model, or every visible GPU's name, of this machine: the devices a trial
    placed here may measure ``kind`` (``cpu`` or ``cuda``) on. ``[]``: no such device."""
    import torch

    if device_type(kind) == "cuda":
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [_cpu_name()]
