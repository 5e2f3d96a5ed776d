"""`dimsearch bench generator`: is a generated model as fast as the hand-written original?

The generated ``pit_*`` and timm's ``pit_*_224`` are loaded with the same weights (through
`convert_state_dict`, so both compute the same function) and timed in one process,
alternating pass by pass (ours, timm, timm, ours, ...) so that drift and noise on a shared
machine hit both alike; a round's figure is the median of its passes per model. Timing a
few passes of one model and then a few of the other was not enough on a shared VM: two
runs of that design gave non-overlapping intervals.
The figure that matters is the median of the per-round throughput ratios, ours / timm, with
a distribution-free confidence interval for it: on a shared machine single rounds swing by
tens of percent, and only an interval says whether a median below 1.0 means "slower" or
"the same, within noise".
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from dimsearch.errors import ArchError
from dimsearch.stats import median_interval

if TYPE_CHECKING:
    from dimsearch.cost import LatencyResult

__all__ = ["GeneratorBench", "bench_generator"]

# untimed passes of each model before the first round
_WARMUP = 5


@dataclass
class GeneratorBench:
    """Per-round throughputs (img/s) of both models and how they were measured."""

    model: str
    timm_model: str
    device: str
    device_name: str
    batch_size: int
    img_size: int
    dtype: str
    rounds: int
    ours: list[float] = field(default_factory=list)
    timm: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        """Per-round throughput ratios, ours / timm: each pair ran back to back, so drift of
        a shared machine between rounds cancels out of the pair."""
        return [a / b for a, b in zip(self.ours, self.timm, strict=True)]

    @property
    def ratio(self) -> float:
        """Median of the paired per-round ratios (>= 1.0: ours is not slower)."""
        return statistics.median(self.ratios)

    @property
    def interval(self) -> tuple[float, float, float]:
        """95% confidence interval of `ratio` (see `dimsearch.stats.median_interval`): (low, high, coverage)."""
        return median_interval(self.ratios)

    @property
    def verdict(self) -> str:
        """``faster`` or ``slower`` when the interval excludes 1.0, else ``same within noise``."""
        low, high, _ = self.interval
        return "faster" if low > 1.0 else "slower" if high < 1.0 else "same within noise"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ours_median"] = statistics.median(self.ours)
        d["timm_median"] = statistics.median(self.timm)
        d["ratios"] = self.ratios
        d["ratio"] = self.ratio
        d["ratio_low"], d["ratio_high"], d["coverage"] = self.interval
        d["verdict"] = self.verdict
        return d


def bench_generator(
    model: str = "pit_s",
    device: str | None = None,
    batch_size: int | None = None,
    img_size: int = 224,
    rounds: int = 41,
    repeats: int = 3,
    bf16: bool | None = None,
) -> GeneratorBench:
    """Time the generated model against timm's implementation, alternating pass by pass.

    Args:
        model: a zoo name with a timm twin (the PiT family).
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
        batch_size: default 128 on CUDA (the PiT paper's throughput batch), 8 on CPU.
        img_size: input resolution.
        rounds: rounds, each giving one paired ratio.
        repeats: timed forward passes per model per round, interleaved with the other's.
        bf16: bf16 autocast (default on for CUDA, off for CPU).
    """
    import timm

    from dimsearch import zoo
    from dimsearch.convert import convert_state_dict
    from dimsearch.cost import measure_latency, measurement_lock
    from dimsearch.models import build_model

    if rounds < 1 or repeats < 1:
        raise ArchError(f"rounds and repeats must be >= 1, got rounds={rounds}, repeats={repeats}")
    twins = [e.name for e in zoo.entries() if e.timm]
    if model not in twins:
        raise ArchError(f"no timm twin for {model!r}; choose from {twins}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = torch.device(device).type == "cuda"
    batch_size = batch_size or (128 if on_cuda else 8)
    bf16 = on_cuda if bf16 is None else bf16
    amp = torch.bfloat16 if bf16 else None

    cfg = zoo.get(model)
    twin = zoo.timm_name(model)
    reference = timm.create_model(twin, img_size=img_size).eval()
    ours = build_model(cfg, img_size=img_size).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), cfg, source="timm"))

    def one_pass(net: torch.nn.Module, warmup: int = 0) -> LatencyResult:
        return measure_latency(
            net, device, batch_size, img_size, warmup=warmup, repeats=1, amp_dtype=amp
        )

    # One hold of the node's measurement lock for the whole benchmark: each pass would
    # otherwise queue behind a training epoch on this node (nested holds are free).
    with measurement_lock(device):
        # untimed warm-up (allocator, kernel choice, caches); the result names the device
        lat = one_pass(ours, warmup=_WARMUP)
        one_pass(reference, warmup=_WARMUP)
        result = GeneratorBench(
            model,
            twin,
            lat.device,
            lat.device_name,
            batch_size,
            img_size,
            "bf16" if bf16 else "fp32",
            rounds,
        )
        for r in range(rounds):
            ms: dict[str, list[float]] = {"ours": [], "timm": []}
            for j in range(repeats):
                pair = [("ours", ours), ("timm", reference)]
                if (r * repeats + j) % 2:  # alternate who goes first, pass by pass
                    pair.reverse()
                for label, net in pair:
                    ms[label].append(one_pass(net).median_ms)
            for label, times in ms.items():
                getattr(result, label).append(1000.0 * batch_size / statistics.median(times))
    return result
