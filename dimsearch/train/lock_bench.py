"""`bench_lock`: does the measurement lock keep training off a latency measurement?

A search measures each trial's latency on the node where other trials train. The measurement
lock (`dimsearch.cost.measurement_lock`) makes training pause at its next epoch boundary while
a measurement runs. This benchmark shows what that buys, on this machine, with the real parts:

* **trainers**: ``trainers`` processes (spawned, each one CPU thread, at the same priority as
  this one, as Ray's workers are) run `train_proxy` on synthetic data, epoch after epoch,
  each epoch in its `training_slot`: the loop a search's trials run;
* **alone**: the model measured before the trainers start and after they stop;
* **busy, no lock**: measured while they train, ``lock=False``: what a figure was before;
* **busy, locked**: measured while they train, ``lock=True``: the trainers pause first.

The busy rounds alternate (free, locked, free, ...), so a change in the machine's load hits
both alike. Each round is one `measure_latency` of ``passes`` timed passes; its median is the
round's figure and (p90 - p10) / median its spread. Per condition the benchmark prints the
median of the rounds' figures with a 95% interval (order statistics, `median_interval`), the
median and the worst spread, and for the locked rounds how long the lock took to get (the
epochs in progress finishing). A lock that works puts "busy, locked" beside "alone" and
"busy, no lock" above both.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dimsearch.stats import median_interval

__all__ = ["CONDITIONS", "LockBench", "bench_lock"]

CONDITIONS = ("alone", "busy, no lock", "busy, locked")


@dataclass
class LockBench:
    """Rounds per condition: each round's median ms, spread and wait for the lock.

    Attributes:
        model: the zoo name measured.
        img_size, batch_size, threads, passes: the measurement's settings.
        trainers: training processes beside the busy rounds.
        epoch_s: the trainers' median epoch time (how long the lock may have to wait).
        medians, spreads, waits: per condition, one value per round; ``waits`` are the
            seconds a round spent getting the lock (0 without it).
        device_name: the CPU model.
    """

    model: str
    img_size: int
    batch_size: int
    threads: int
    passes: int
    trainers: int
    device_name: str = ""
    epoch_s: float | None = None
    medians: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CONDITIONS})
    spreads: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CONDITIONS})
    waits: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CONDITIONS})

    def summary(self, condition: str) -> dict[str, float]:
        """Median ms with its 95% interval, median and worst spread, median wait."""
        meds, spreads = self.medians[condition], self.spreads[condition]
        low, high, coverage = median_interval(meds)
        return {
            "median_ms": statistics.median(meds),
            "low_ms": low,
            "high_ms": high,
            "coverage": coverage,
            "spread": statistics.median(spreads),
            "worst_spread": max(spreads),
            "wait_s": statistics.median(self.waits[condition]),
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = {c: self.summary(c) for c in CONDITIONS if self.medians[c]}
        return d


def bench_lock(
    model: str = "pit_ti",
    *,
    trainers: int = 2,
    rounds: int = 10,
    passes: int = 30,
    img_size: int = 224,
    batch_size: int = 1,
    threads: int = 1,
    progress: Callable[[str], None] = lambda _line: None,
) -> LockBench:
    """Measure ``model`` alone and beside ``trainers`` training processes, with and without
    the lock, ``rounds`` times each (see the module doc). CPU only: the lock is per device
    kind, and this machine's contention is its cores.

    Raises:
        DimsearchError: ``model`` is not in the zoo, or a trainer died before training.
    """
    import torch

    from dimsearch import zoo
    from dimsearch.cost import measure_latency
    from dimsearch.cost._latency import device_name
    from dimsearch.errors import DimsearchError
    from dimsearch.models import build_model

    cfg = zoo.get(model)
    net = build_model(cfg, num_classes=1000)
    res = LockBench(model, img_size, batch_size, threads, passes, trainers)
    res.device_name = device_name(torch.device("cpu"))

    def measure(condition: str, lock: bool) -> None:
        start = time.monotonic()
        r = measure_latency(
            net, "cpu", batch_size, img_size, warmup=3, repeats=passes, threads=threads, lock=lock
        )
        res.medians[condition].append(r.median_ms)
        res.spreads[condition].append((r.p90_ms - r.p10_ms) / r.median_ms)
        # the timed passes take about passes x median: the rest of the round was the wait
        res.waits[condition].append(
            max(0.0, time.monotonic() - start - (passes + 3) * r.mean_ms / 1e3)
        )

    half = max(1, rounds // 2)
    progress(f"alone: {half} rounds before the trainers start")
    for _ in range(half):
        measure("alone", lock=True)
    ctx = mp.get_context("spawn")
    epochs = ctx.Queue()
    stop = ctx.Event()
    procs = [
        ctx.Process(target=_trainer, args=(model, epochs, stop), daemon=True)
        for _ in range(trainers)
    ]
    try:
        for p in procs:
            p.start()
        progress(f"{trainers} trainer(s) starting (each trains {model} on synthetic 32 px data)")
        seen: list[float] = []
        deadline = time.monotonic() + 300
        while len(seen) < trainers and time.monotonic() < deadline:  # every trainer is training
            try:
                seen.append(epochs.get(timeout=1.0))
            except queue.Empty:  # none this second: check the trainers are alive
                if any(not p.is_alive() for p in procs):
                    raise DimsearchError("a trainer process died before its first epoch") from None
        if len(seen) < trainers:
            raise DimsearchError("the trainers did not finish an epoch within 300 s")
        progress(f"busy: {rounds} rounds without and {rounds} with the lock, alternating")
        for _ in range(rounds):
            measure("busy, no lock", lock=False)
            measure("busy, locked", lock=True)
        while not epochs.empty():
            seen.append(epochs.get_nowait())
        res.epoch_s = statistics.median(seen)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    progress(f"alone: {rounds - half} rounds after the trainers stopped")
    for _ in range(rounds - half):
        measure("alone", lock=True)
    return res


def _trainer(model: str, epochs: Any, stop: Any) -> None:
    """One training process: `train_proxy` of ``model`` on small synthetic data, one thread,
    epoch after epoch until ``stop`` is set; puts each epoch's seconds on ``epochs``."""
    from dimsearch import zoo
    from dimsearch.data import DataConfig, load_data
    from dimsearch.train import TrainConfig, train_proxy

    data = load_data(DataConfig(kind="synthetic", img_size=32, num_classes=10,
                                train_per_class=16, val_per_class=4))  # fmt: skip
    cfg = TrainConfig(epochs=1000, batch_size=32, num_threads=1, warmup_epochs=0)

    def report(ep: Any) -> bool:
        epochs.put(float(ep.seconds))
        return stop.is_set()

    train_proxy(zoo.get(model), data, cfg, device="cpu", report=report)
