"""Ray trainables with scripted outcomes, to test the Ray/Optuna bridge against every case.

The real trainable (`dimsearch.search.trainable.run_trial`) is exercised end to end in
test_search_run.py; here the *bridge* is under test, so each trial's behaviour is chosen by
its sampled stage-1 depth, and the test checks that the study records exactly what happened.
"""

from __future__ import annotations

import math
import os
import time

# s1.depth -> what the trial does (7.. only where a test's space offers them)
BEHAVIOUR = {
    1: "good",
    2: "good",
    3: "raise",
    4: "nan",
    5: "die",
    6: "oom",
    7: "silent",  # returns without reporting anything
    8: "nan_latency",  # trains in full, but its latency figure is NaN
    9: "slow",  # a second per epoch: outlives a tiny time budget
    10: "lucky",  # trains like "good", but a repeat (another training seed) lands 20 lower
}
EPOCHS = 4


def behaviour(arch: dict) -> str:
    return BEHAVIOUR[arch["stages"][0]["depth"]]


def accuracy_of(arch: dict, epoch: int) -> float:
    """Later trials are worse, so ASHA has something to stop; grows with the epoch."""
    number = int(arch["name"].removeprefix("trial")) if arch["name"].startswith("trial") else 0
    return 90.0 - 5.0 * number + epoch


def scripted(config: dict) -> None:
    from ray import tune

    arch = config["arch"]
    kind = behaviour(arch)
    if kind == "silent":
        return
    latency = math.nan if kind == "nan_latency" else 1.5
    base = {"latency_ms": latency, "node": {"hostname": "test", "pid": os.getpid()}}
    for epoch in range(1, EPOCHS + 1):
        time.sleep(1.0 if kind == "slow" else 0.05)
        # faults strike in epoch 1, before ASHA's first milestone could stop the trial
        if kind == "raise" and epoch == 1:
            raise RuntimeError(f"boom in epoch {epoch}")
        if kind == "die" and epoch == 1:
            os._exit(3)  # the worker process vanishes, as after a segfault or a kill
        if kind == "oom" and epoch == 1:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        # a repeat (another training seed) lands a little higher: seed noise, scripted
        noise = (-20.0 if kind == "lucky" else 0.5) * config["train"].get("seed", 0)
        acc = math.nan if kind == "nan" else accuracy_of(arch, epoch) + noise
        tune.report({"epoch": epoch, "accuracy": acc, "train_loss": 1.0 / epoch, **base})
