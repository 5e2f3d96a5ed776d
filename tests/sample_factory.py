"""Small hand-made sample tables for the sample-table and fidelity tests (no study, no
training): real architectures (pit_ti with its first stage changed), made-up curves."""

from __future__ import annotations

from dimsearch import zoo
from dimsearch.search.sample import SampleRecord, SampleTable


def arch(depth: int = 2, heads: int = 2, name: str = "") -> dict:
    """pit_ti with its first stage's depth and heads changed: distinct, valid architectures."""
    d = zoo.get("pit_ti").to_dict()
    d["stages"][0].update(depth=depth, heads=heads)
    d["name"] = name
    return d


def record(number: int, a: dict, curve: list[float], train_seed: int = 0, **kw) -> SampleRecord:
    fields = {
        "seed": None,
        "optuna_params": {"stages": 3, "s1.depth": a["stages"][0]["depth"], "pool": "dwconv"},
        "params": 4_847_272,
        "gflops": 0.70202,
        "latency_ms": 51.131,
        "epoch_seconds": (4.5,) * len(curve),
        "epoch_cpu_seconds": (4.25,) * len(curve),
    }
    fields.update(kw)
    return SampleRecord(number=number, train_seed=train_seed, arch=a, curve=tuple(curve), **fields)


def table(records: list[SampleRecord], epochs: int = 3) -> SampleTable:
    return SampleTable(
        study="hand",
        epochs=epochs,
        objectives=("accuracy", "gflops", "latency_ms"),
        space={"name": "hand", "train": {"epochs": epochs, "seed": 0}},
        records=tuple(records),
        made_by={"command": "by hand", "created": "2026-01-01T00:00:00+00:00", "versions": {}},
        excluded={"pruned": 2},
    )
