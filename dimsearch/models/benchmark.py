"""`dimsearch bench generator`: is a generated model as fast as the hand-written original?

The generated ``pit_*`` and timm's ``pit_*_224`` are loaded with the same weights (through
`convert_state_dict`, so both compute the same function) and timed in one process,
alternating round by round so that drift and noise on a shared machine hit both alike.
The figure that matters is the median of the per-round throughput ratios, ours / timm.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from dimsearch.errors import ArchError

__all__ = ["GeneratorBench", "bench_generator"]


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ours_median"] = statistics.median(self.ours)
        d["timm_median"] = statistics.median(self.timm)
        d["ratios"] = self.ratios
        d["ratio"] = self.ratio
        return d


def bench_generator(
    model: str = "pit_s",
    device: str | None = None,
    batch_size: int | None = None,
    img_size: int = 224,
    rounds: int = 7,
    repeats: int = 5,
    bf16: bool | None = None,
) -> GeneratorBench:
    """Time the generated model against timm's implementation, alternating rounds.

    Args:
        model: a zoo name with a timm twin (the PiT family).
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
        batch_size: default 128 on CUDA (the PiT paper's throughput batch), 8 on CPU.
        img_size: input resolution.
        rounds: alternating rounds; each times ``repeats`` forward passes per model.
        repeats: timed forward passes per model per round.
        bf16: bf16 autocast (default on for CUDA, off for CPU).
    """
    import timm

    from dimsearch import zoo
    from dimsearch.convert import convert_state_dict
    from dimsearch.cost import measure_latency
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
    reference = timm.create_model(zoo.timm_name(model), img_size=img_size).eval()
    ours = build_model(cfg, img_size=img_size).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), cfg, source="timm"))

    result: GeneratorBench | None = None
    for r in range(rounds):
        pair = [("ours", ours), ("timm", reference)]
        if r % 2:  # alternate who goes first, so neither always runs on a warmer machine
            pair.reverse()
        for label, net in pair:
            lat = measure_latency(
                net,
                device,
                batch_size,
                img_size,
                warmup=2 if r else 5,
                repeats=repeats,
                amp_dtype=amp,
            )
            if result is None:
                result = GeneratorBench(
                    model,
                    zoo.timm_name(model),
                    lat.device,
                    lat.device_name,
                    batch_size,
                    img_size,
                    "bf16" if bf16 else "fp32",
                    rounds,
                )
            getattr(result, label).append(lat.throughput)
    return result  # type: ignore[return-value]  # rounds >= 1, so it was set
