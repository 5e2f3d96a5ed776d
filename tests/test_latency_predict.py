"""Latency: settings, the measurement lock, the part decomposition, the table and its cache,
the predictor and its check (on CPU, tiny shapes)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import random_archs
from typer.testing import CliRunner

from dimsearch import cost, zoo
from dimsearch.cli import app
from dimsearch.config import (
    HEAD_POOLS,
    KV_REDUCTIONS,
    POS_ENCODINGS,
    STEMS,
    TRANSITIONS,
    ArchConfig,
    HeadConfig,
    StageConfig,
    StemConfig,
    TransitionConfig,
)
from dimsearch.cost import LatencyResult, LatencySettings, Part, decompose
from dimsearch.cost._check import sample_archs, score, spearman
from dimsearch.cost._lock import LOCK_DIR_ENV, measurement_lock, training_slot
from dimsearch.cost._part_modules import _MODULES, build_part
from dimsearch.cost._predict import (
    LatencyTable,
    fit_relative,
    model_groups,
    open_table,
    predict_latency,
)
from dimsearch.errors import LatencyError
from dimsearch.layers import Stage
from dimsearch.models import build_model
from dimsearch.search import load_space

pytestmark = pytest.mark.usefixtures("private_latency")


def tiny(pos: str = "le", head: str = "token") -> ArchConfig:
    return ArchConfig(
        stem=StemConfig("patch", patch_size=4, stride=4),
        stages=(
            StageConfig(depth=2, dim=16, heads=2, pos=pos),
            StageConfig(depth=1, dim=32, heads=2, sr_ratio=2, sr_kind="avg"),
        ),
        transitions=(TransitionConfig("dwconv"),),
        head=HeadConfig(head),
    )


FAST = LatencySettings(threads=1, warmup=0, repeats=2)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp8"}, r"latency\.precision must be one of \['fp32', 'bf16', 'fp16'\]"),
        ({"mode": "fast"}, r"latency\.mode must be one of \['latency', 'throughput'\]"),
        (
            {"batch_size": 0},
            r"latency\.batch_size must be an integer in \[1, 4096\], or null .*, got 0",
        ),
        (
            {"threads": True},
            r"latency\.threads must be null or an integer in \[1, 1024\], got True",
        ),
        ({"device": "gpu"}, r"latency\.device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ({"predict": 1}, r"latency\.predict must be true or false, got 1"),
        ({"repeats": 0}, r"latency\.repeats must be an integer in \[1, 10000\]"),
        ({"warmup": -1}, r"latency\.warmup must be an integer in \[0, 10000\]"),
        ({"clock": "tsc"}, r"latency\.clock must be one of \['wall', 'cpu'\]"),
        ({"clock": "cpu", "threads": 2}, r"clock 'cpu' .* needs device 'cpu' and threads 1"),
        ({"clock": "cpu", "threads": 1, "device": "cuda"}, r"got device='cuda', threads=1"),
    ],
)
def test_settings_errors_state_the_rule(kwargs: dict, message: str) -> None:
    with pytest.raises(LatencyError, match=message):
        LatencySettings(**kwargs)


def test_settings_defaults_and_round_trip() -> None:
    assert LatencySettings().batch == 1
    assert LatencySettings(device="cuda:0").batch == 128
    assert LatencySettings(mode="throughput").batch == 128  # the PiT paper's images/s
    s = LatencySettings(precision="bf16", threads=2, batch_size=4)
    assert LatencySettings.from_dict(s.to_dict()) == s
    with pytest.raises(LatencyError, match=r"unknown keys \['batch'\]"):
        LatencySettings.from_dict({"batch": 1})


def test_measure_latency_records_settings_and_software_and_restores_threads() -> None:
    torch.set_num_threads(1)
    model = build_model(tiny(), num_classes=4, img_size=32)
    res = cost.measure_latency(
        model, img_size=16, warmup=0, repeats=2, threads=2, precision="bf16", mode="throughput"
    )
    assert torch.get_num_threads() == 1  # restored
    assert (res.num_threads, res.precision, res.dtype, res.mode) == (
        2,
        "bf16",
        "bfloat16",
        "throughput",
    )
    assert res.batch_size == 128 and res.figure == res.throughput and res.unit == "images/s"
    assert res.software == {"torch": torch.__version__, "dimsearch": "0.1.0"}
    again = LatencyResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again == res


def test_old_latency_records_still_load() -> None:
    old = {  # what trials stored before precision, mode, software and clock existed
        "median_ms": 2.0, "p10_ms": 1.5, "p90_ms": 3.0, "mean_ms": 2.1, "min_ms": 1.4,
        "repeats": 10, "warmup": 3, "batch_size": 1, "img_size": [224, 224],
        "throughput": 500.0, "device": "cpu", "device_name": "x", "num_threads": 1,
        "dtype": "bfloat16", "torch_version": "2.4.0",
    }  # fmt: skip
    res = LatencyResult.from_dict(old)
    assert (res.precision, res.mode, res.clock, res.img_size) == (
        "bf16",
        "latency",
        "wall",
        (224, 224),
    )
    assert res.software == {"torch": "2.4.0"} and res.figure == 2.0


def test_precision_and_amp_dtype_must_agree() -> None:
    with pytest.raises(LatencyError, match="disagree"):
        cost.measure_latency(
            torch.nn.Conv2d(3, 1, 1), img_size=8, precision="fp16", amp_dtype=torch.bfloat16
        )


def test_an_unsupported_precision_is_refused_not_mislabelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # torch only warns and runs float32 when autocast refuses a dtype; we must refuse instead
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a: False)
    with pytest.raises(LatencyError, match=r"precision 'fp16' is not supported on cpu"):
        cost.measure_latency(torch.nn.Conv2d(3, 1, 1), img_size=8, precision="fp16", repeats=1)


def test_cpu_clock_measures() -> None:
    model = build_model(tiny(), num_classes=4, img_size=32)
    res = cost.measure_latency(model, img_size=32, warmup=0, repeats=2, threads=1, clock="cpu")
    assert res.clock == "cpu" and res.median_ms > 0


# --- the part decomposition -------------------------------------------------------------------


ARCHS = random_archs(60, seed=3, img_size=64)


def _expected_count(cfg: ArchConfig) -> int:
    return 2 + (len(cfg.stages) - 1) + len(cfg.stages) + 2 * cfg.depth


@pytest.mark.parametrize("cfg", ARCHS[:20] + [zoo.get(n) for n in zoo.names()])
def test_decomposition_counts_every_piece(cfg: ArchConfig) -> None:
    size = 64 if cfg in ARCHS else 224
    parts = decompose(cfg, size, 10)
    assert sum(parts.values()) == _expected_count(cfg)
    for p in parts:
        assert Part.from_key(p.key) == p


def test_decomposition_reaches_every_layer_kind() -> None:
    seen: dict[str, set] = {k: set() for k in ("stem", "transition", "entry", "sr", "head")}
    mixes = set()
    for cfg in ARCHS:
        for p in decompose(cfg, 64, 10):
            f = dict(p.fields)
            if p.kind in ("stem", "transition"):
                seen[p.kind].add(f["kind"])
            elif p.kind == "entry":
                seen["entry"].add(f["pos"])
            elif p.kind == "attn":
                seen["sr"].add(f.get("sr_kind", "none"))
                mixes.add(f["mix"])
            elif p.kind == "head":
                seen["head"].add((f["pool"], f["distilled"]))
    assert seen["stem"] == set(STEMS)
    assert seen["transition"] == set(TRANSITIONS)
    assert seen["entry"] == set(POS_ENCODINGS)
    assert seen["sr"] == {*KV_REDUCTIONS, "none"}
    assert {pool for pool, _ in seen["head"]} == set(HEAD_POOLS)
    assert ("token", True) in seen["head"] and ("token", False) in seen["head"]
    assert mixes == {True, False}


def test_parts_of_one_shape_are_shared() -> None:
    a, b = tiny(pos="le"), tiny(pos="gl")
    pa, pb = set(decompose(a, 32)), set(decompose(b, 32))
    assert len(pa - pb) == 1 and next(iter(pa - pb)).kind == "entry"


def _chain(cfg: ArchConfig, model: torch.nn.Module, img: int, x: torch.Tensor) -> torch.Tensor:
    """Run the model part by part through the part modules, sharing the model's weights."""
    order = list(decompose(cfg, img, model.num_classes))
    by_kind: dict[str, list[Part]] = {}
    for p in order:
        by_kind.setdefault(p.kind, []).append(p)
    stem = _MODULES["stem"](by_kind["stem"][0])
    stem.stem, stem.cls_token = model.stem, model.cls_token
    grid, cls = stem(x)
    seq = None
    grids = cfg.grids(img)
    for i, (scfg, stage) in enumerate(zip(cfg.stages, model.stages, strict=True)):
        t = cfg.head.num_tokens
        if i > 0:
            tr = _MODULES["transition"](
                Part.make("transition", kind=cfg.transitions[i - 1].kind, dim_in=cfg.stages[i - 1].dim,
                          dim=scfg.dim, stride=cfg.transitions[i - 1].stride, grid=grids[i - 1],
                          tokens=t)
            )  # fmt: skip
            tr.down = stage.downsample
            grid, cls = tr(seq)
        entry = _MODULES["entry"](
            Part.make("entry", pos=scfg.pos, dim=scfg.dim, grid=grids[i], tokens=t)
        )
        entry.pos = stage.pos
        seq, _ = entry(grid, cls)
        attn_part = next(
            p
            for p in order
            if p.kind == "attn" and p.get("dim") == scfg.dim and p.get("grid") == grids[i]
        )
        mlp_part = next(p for p in order if p.kind == "mlp" and p.get("dim") == scfg.dim and p.get("seq") == seq.shape[1])  # fmt: skip
        for block in stage.blocks:
            attn, mlp = _MODULES["attn"](attn_part), _MODULES["mlp"](mlp_part)
            attn.block = mlp.block = block
            seq = mlp(attn(seq))
    head = _MODULES["head"](by_kind["head"][0])
    head.model = model  # its norm and classifier(s)
    return head(seq)


@pytest.mark.parametrize("cfg", ARCHS[:12], ids=lambda c: f"{c.stem.kind}-{len(c.stages)}")
def test_parts_run_the_models_own_code(cfg: ArchConfig) -> None:
    """Chained with the model's weights, the parts compute exactly what the model does."""
    model = build_model(cfg, num_classes=5, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(_chain(cfg, model, 64, x), model(x), atol=1e-5)


def _layout(module: torch.nn.Module) -> list[tuple[str, str, tuple[int, ...]]]:
    """Each submodule's class and each parameter's and buffer's shape, by name."""
    mods = [(n, type(m).__name__, ()) for n, m in module.named_modules()]
    tensors = [(n, "tensor", tuple(v.shape)) for n, v in module.state_dict().items()]
    return mods + tensors


@pytest.mark.parametrize("cfg", ARCHS[:12], ids=lambda c: f"{c.stem.kind}-{len(c.stages)}")
def test_parts_are_built_as_the_model_builds_its_layers(cfg: ArchConfig) -> None:
    """Each part's layers are the model's own: same classes, same parameter shapes."""
    model = build_model(cfg, num_classes=5, img_size=64)
    parts = list(decompose(cfg, 64, 5))
    grids, t = cfg.grids(64), cfg.head.num_tokens

    def one(kind: str, **match: object) -> torch.nn.Module:
        p = next(
            p for p in parts if p.kind == kind and all(p.get(k) == v for k, v in match.items())
        )
        return _MODULES[kind](p)

    assert _layout(one("stem").stem) == _layout(model.stem)
    for i, (scfg, stage) in enumerate(zip(cfg.stages, model.stages, strict=True)):
        if i > 0:
            tr = one("transition", dim_in=cfg.stages[i - 1].dim, dim=scfg.dim, grid=grids[i - 1])
            assert _layout(tr.down) == _layout(stage.downsample)
        entry = one("entry", dim=scfg.dim, grid=grids[i], pos=scfg.pos)
        assert _layout(entry) == _layout(Stage(stage.pos, []))
        block = stage.blocks[0]
        attn = one("attn", dim=scfg.dim, grid=grids[i])
        assert _layout(attn.block.attn) == _layout(block.attn)
        mlp = one("mlp", dim=scfg.dim, seq=t + grids[i][0] * grids[i][1])
        assert _layout(mlp.block.mlp) == _layout(block.mlp)
    head = one("head").model
    for name in ("norm", "head", "head_dist"):
        ours, theirs = getattr(head, name), getattr(model, name)
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert _layout(ours) == _layout(theirs)


def test_every_part_builds_and_runs_alone() -> None:
    parts = set()
    for cfg in ARCHS[:12]:
        parts.update(decompose(cfg, 64, 10))
    with torch.inference_mode():
        for p in parts:
            build_part(p, 2, torch.device("cpu"))()


# --- table, prediction, cache -----------------------------------------------------------------


def _unit_table(cfgs: list[ArchConfig], img: int) -> LatencyTable:
    table = LatencyTable(FAST, "test cpu", {"torch": "x"})
    for cfg in cfgs:
        for p in decompose(cfg, img, 10):
            table.parts[p.key] = {"ms": 1.0, "min_ms": 1.0, "repeats": 1}
    return table


def test_prediction_is_the_sum_of_the_parts() -> None:
    table = _unit_table(ARCHS, 64)
    for cfg in ARCHS:
        assert predict_latency(cfg, table, 64, 10) == _expected_count(cfg)


def test_prediction_applies_the_fitted_correction_per_space() -> None:
    table = _unit_table(ARCHS[:6], 64)
    # space "a": whole models cost 2 * parts + 1; space "b": 3 * parts
    for cfg, space, ms in [(c, "a", lambda n: 2.0 * n + 1) for c in ARCHS[:3]] + [
        (c, "b", lambda n: 3.0 * n) for c in ARCHS[3:6]
    ]:
        table.models[cfg.to_json()] = {"arch": cfg.to_dict(), "img_size": 64, "num_classes": 10,
                                       "ms": ms(_expected_count(cfg)), "space": space}  # fmt: skip
    c = table.correction("a")
    assert (c.scale, c.overhead_ms, c.models) == (pytest.approx(2), pytest.approx(1), 3)
    n = _expected_count(ARCHS[0])
    assert predict_latency(ARCHS[0], table, 64, 10, space="a") == pytest.approx(2 * n + 1)
    assert predict_latency(ARCHS[0], table, 64, 10, space="b") == pytest.approx(3 * n)
    assert table.correction().models == table.correction("unknown").models == 6  # pooled


def test_a_missing_part_is_named() -> None:
    table = _unit_table([tiny("le")], 32)
    with pytest.raises(LatencyError, match=r"no timing for 1 part\(s\).*entry\(.*pos=gl"):
        predict_latency(tiny("gl"), table, 32, 10)


def test_predicting_needs_no_torch() -> None:
    code = (
        "import sys; from dimsearch import cost, zoo; "
        "from dimsearch.cost._predict import LatencyTable; "
        "cfg = zoo.get('pit_ti'); t = LatencyTable(cost.LatencySettings(threads=1), 'x', {}); "
        "t.parts.update({p.key: {'ms': 1.0} for p in cost.decompose(cfg, 224)}); "
        "assert cost.predict_latency(cfg, t) == 31; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_relative_recovers_a_line_and_degrades_gracefully() -> None:
    xs = [1.0, 2.0, 5.0, 9.0]
    assert fit_relative(xs, [3 * x + 0.5 for x in xs]) == (pytest.approx(3), pytest.approx(0.5))
    assert fit_relative([2.0], [4.0]) == (pytest.approx(2), 0.0)
    assert fit_relative([], []) == (1.0, 0.0)


def test_model_groups_fit_the_memory_budget() -> None:
    cfgs = [zoo.get("pit_ti"), zoo.get("pit_ti"), zoo.get("pit_s"), zoo.get("pit_ti")]
    ti = 4 * cost.estimate(cfgs[0]).params
    assert model_groups(cfgs, 224, 1000, 2 * ti) == [[0, 1], [2], [3]]  # pit_s alone
    assert model_groups(cfgs, 224, 1000, 1 << 40) == [[0, 1, 2, 3]]


def test_calibrate_caches_and_a_rerun_measures_nothing_new(tmp_path: Path) -> None:
    cfgs = [tiny("le"), tiny("pa")]
    table = open_table(FAST)
    assert table.path.parent == tmp_path / "cache" / "latency" and not table.parts
    first = cost.calibrate(table, cfgs, img_size=32, num_classes=10, fit_models=cfgs[:1])
    assert (
        first.parts_measured
        == first.parts_needed
        == len(set(decompose(cfgs[0], 32, 10)) | set(decompose(cfgs[1], 32, 10)))
    )
    assert first.models_measured == 1 and table.path.is_file()

    again = open_table(FAST)  # a new process would do this
    assert again.parts == table.parts and again.models == table.models
    second = cost.calibrate(again, cfgs, img_size=32, num_classes=10, fit_models=cfgs[:1])
    assert (second.parts_measured, second.models_measured) == (0, 0)
    third = cost.calibrate(again, [tiny("none")], img_size=32, num_classes=10)
    assert third.parts_measured == 1  # only the new entry shape
    assert predict_latency(tiny("none"), again, 32, 10) > 0


def test_tables_are_keyed_by_settings_and_software(tmp_path: Path) -> None:
    a = open_table(FAST)
    b = open_table(LatencySettings(threads=1, batch_size=4))
    c = open_table(LatencySettings(threads=2))
    assert len({a.path, b.path, c.path}) == 3
    ident = a.identity
    assert ident["software"]["torch"] == torch.__version__ and ident["threads"] == 1
    other = open_table(FAST, device_name="Some Other CPU")
    assert other.path != a.path and other.identity["device_name"] == "Some Other CPU"
    with pytest.raises(LatencyError, match="needs settings.threads"):
        open_table(LatencySettings())


def test_an_unreadable_cache_starts_afresh() -> None:
    table = open_table(FAST)
    table.path.parent.mkdir(parents=True)
    table.path.write_text("{not json")
    assert open_table(FAST).parts == {}


# --- the check's statistics and sampling ------------------------------------------------------


def test_spearman_and_score() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 1, 2], [1, 1, 2]) == pytest.approx(1)  # ties share a rank
    s = score([1.05, 2.5, 3.0], [1.0, 2.0, 3.0])
    assert s.within_10 == pytest.approx(2 / 3) and s.worst == pytest.approx(0.25)


def test_sample_archs_is_seeded_distinct_and_within_budgets() -> None:
    space = load_space("spaces/pit.yaml")
    a, _ = sample_archs(space, 20, seed=0)
    b, _ = sample_archs(space, 20, seed=0)
    c, _ = sample_archs(space, 20, seed=1, exclude=a[:5])
    assert a == b and a != c and not set(a[:5]) & set(c)
    assert len(set(a)) == 20 and all(space.check_budgets(x) is None for x in a)


# --- the measurement lock ---------------------------------------------------------------------

_CTX = mp.get_context("fork") if sys.platform.startswith("linux") else None
lock_test = pytest.mark.skipif(_CTX is None, reason="fork-based lock tests run on Linux")


class _Log:
    """Events in the order they happened across processes: a shared counter stamps each one
    at the moment it occurs (a queue would order them by when its feeder thread flushed)."""

    NAMES = ("T1+", "T1-", "T2+", "T2-", "M?", "M+", "M-")

    def __init__(self) -> None:
        self.clock = _CTX.Value("i", 0)
        self.at = _CTX.Array("i", [-1] * len(self.NAMES))

    def mark(self, name: str) -> None:
        with self.clock.get_lock():
            self.at[self.NAMES.index(name)] = self.clock.value
            self.clock.value += 1

    def order(self) -> list[str]:
        stamped = [(self.at[i], n) for i, n in enumerate(self.NAMES) if self.at[i] >= 0]
        return [n for _, n in sorted(stamped)]


def _trainer(log: _Log, started, go, epochs: int, lock_dir: str) -> None:
    os.environ[LOCK_DIR_ENV] = lock_dir
    for epoch in range(1, epochs + 1):
        with training_slot("cpu"):
            log.mark(f"T{epoch}+")
            started.set()
            go.wait(10)
            log.mark(f"T{epoch}-")


def _measurer(log: _Log, acquired, release, lock_dir: str) -> None:
    os.environ[LOCK_DIR_ENV] = lock_dir
    log.mark("M?")
    with measurement_lock("cpu", timeout=20):
        log.mark("M+")
        acquired.set()
        release.wait(10)
        log.mark("M-")


@lock_test
def test_a_measurement_waits_for_the_epoch_and_pauses_training() -> None:
    d = os.environ[LOCK_DIR_ENV]
    log, started, go = _Log(), _CTX.Event(), _CTX.Event()
    acquired, release = _CTX.Event(), _CTX.Event()
    trainer = _CTX.Process(target=_trainer, args=(log, started, go, 2, d))
    trainer.start()
    assert started.wait(20)
    measurer = _CTX.Process(target=_measurer, args=(log, acquired, release, d))
    measurer.start()
    assert not acquired.wait(0.5)  # epoch 1 is running: the measurement waits
    go.set()  # epoch 1 ends; epoch 2 must not start before the measurement is done
    assert acquired.wait(20)
    time.sleep(0.3)
    release.set()
    measurer.join(20)
    trainer.join(20)
    assert log.order() == ["T1+", "M?", "T1-", "M+", "M-", "T2+", "T2-"]
    assert trainer.exitcode == measurer.exitcode == 0


def _looping_trainer(inside, stop, lock_dir: str, offset: float) -> None:
    os.environ[LOCK_DIR_ENV] = lock_dir
    time.sleep(offset)
    while not stop.is_set():
        with training_slot("cpu"):
            with inside.get_lock():
                inside.value += 1
            time.sleep(0.15)
            with inside.get_lock():
                inside.value -= 1


@lock_test
def test_staggered_epochs_cannot_starve_a_measurement() -> None:
    """Two trainers whose epochs overlap always hold the device between them; the wanted
    marker still gets a measurement through, with no epoch running while it measures."""
    d = os.environ[LOCK_DIR_ENV]
    inside, stop = _CTX.Value("i", 0), _CTX.Event()
    trainers = [
        _CTX.Process(target=_looping_trainer, args=(inside, stop, d, off)) for off in (0, 0.07)
    ]
    for p in trainers:
        p.start()
    time.sleep(0.5)
    try:
        for _ in range(3):
            with measurement_lock("cpu", timeout=20):
                for _ in range(5):
                    assert inside.value == 0
                    time.sleep(0.02)
            time.sleep(0.2)
    finally:
        stop.set()
        for p in trainers:
            p.join(20)


def _exclusive(counter, peak, lock_dir: str) -> None:
    os.environ[LOCK_DIR_ENV] = lock_dir
    for _ in range(5):
        with measurement_lock("cpu", timeout=20):
            with counter.get_lock():
                counter.value += 1
                peak.value = max(peak.value, counter.value)
            time.sleep(0.01)
            with counter.get_lock():
                counter.value -= 1


@lock_test
def test_measurements_exclude_each_other() -> None:
    d = os.environ[LOCK_DIR_ENV]
    counter, peak = _CTX.Value("i", 0), _CTX.Value("i", 0)
    procs = [_CTX.Process(target=_exclusive, args=(counter, peak, d)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert peak.value == 1 and all(p.exitcode == 0 for p in procs)


def _die_holding(held, lock_dir: str) -> None:
    os.environ[LOCK_DIR_ENV] = lock_dir
    with measurement_lock("cpu"):
        held.set()
        time.sleep(60)


@lock_test
def test_a_dead_holder_frees_the_device() -> None:
    held = _CTX.Event()
    p = _CTX.Process(target=_die_holding, args=(held, os.environ[LOCK_DIR_ENV]))
    p.start()
    assert held.wait(20)
    with (
        pytest.raises(TimeoutError, match="holds the device"),
        measurement_lock("cpu", timeout=0.2),
    ):
        pass
    p.kill()
    p.join(20)
    with measurement_lock("cpu", timeout=10) as hold:
        assert hold.kind == "cpu"


def test_locks_are_per_device_kind_reentrant_and_refuse_self_deadlock() -> None:
    with measurement_lock("cpu"):
        with measurement_lock("cpu", timeout=1):  # nested: held once
            pass
        with measurement_lock("cuda:0", timeout=1):  # another kind is independent
            pass
    with (
        training_slot("cpu"),
        pytest.raises(RuntimeError, match="would wait for itself"),
        measurement_lock("cpu"),
    ):
        pass


def test_training_takes_a_slot_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from dimsearch.data import DataConfig, load_data
    from dimsearch.train import TrainConfig, loop, train_proxy

    slots = []

    @contextmanager
    def spy(device):
        slots.append(str(device))
        yield

    monkeypatch.setattr(loop, "training_slot", spy)
    data = load_data(DataConfig(img_size=16, num_classes=2, train_per_class=4, val_per_class=2))
    arch = tiny().replace(stem=StemConfig("patch", patch_size=4, stride=4))
    train_proxy(arch, data, TrainConfig(epochs=2, batch_size=4), device="cpu")
    assert slots == ["cpu", "cpu"]


# --- command line -----------------------------------------------------------------------------

TINY_SPACE = """
name: tiny
target_img_size: 48
num_classes: 10
arch:
  stages: {low: 2, high: 3}
  stem: {choices: [patch, conv3, conv7]}
  patch_size: 8
  heads: {choices: [1, 2]}
  head_dim: {choices: [8, 16]}
  head_mult: {choices: [1, 2]}
  depth: [{low: 1, high: 2}, {low: 1, high: 2}, 1]
  sr: [{choices: [1, 2]}, 1, 1]
  sr_kind: {choices: [dwconv, avg, max]}
  head_mix: {choices: [true, false]}
  mlp_ratio: 2
  qkv_bias: true
  pool: {choices: [dwconv, avg, max, conv]}
  pos: {choices: [le, gl, pa, none]}
  pos_at: {choices: [stem, stages]}
  head: {choices: [token, avg]}
  distilled: false
  norm_eps: 1.0e-6
  drop_path: 0.0
objectives: [accuracy, gflops, latency_ms]
seeds: []
latency: {device: cpu, batch_size: 1, repeats: 2, warmup: 0}
data: {kind: synthetic, img_size: 48, num_classes: 10, train_per_class: 4, val_per_class: 2}
"""


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_cli_calibrate_then_rerun_reuses_the_cache(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    args = ("latency", "calibrate", str(space), "--samples", "6", "--fit-models", "2")
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    assert "distinct parts" in res.output and "cached in" in res.output
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    assert "measured 0 of" in res.output and "0 of 2 whole models" in res.output
    res = run_cli(*args, "--refresh")
    assert res.exit_code == 0, res.output
    assert "measured 0 of" not in res.output and "2 of 2 whole models" in res.output


def test_cli_errors_are_exit_status_2(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    res = run_cli("latency", "check", str(space), "--n", "3")
    assert res.exit_code == 2 and "run `dimsearch latency calibrate`" in res.output
    res = run_cli("latency", "calibrate", str(space), "--precision", "fp8")
    assert res.exit_code == 2 and "latency.precision must be one of" in res.output


@pytest.mark.slow
def test_cli_calibrate_and_check_on_a_tiny_space(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    # CPU time: on a shared machine the elapsed time of millisecond passes is mostly load
    settings = ("--clock", "cpu", "--threads", "1", "--repeats", "9")
    res = run_cli("latency", "calibrate", str(space), "--samples", "200", *settings)
    assert res.exit_code == 0, res.output
    out = tmp_path / "check.json"
    res = run_cli("latency", "check", str(space), "--n", "12", "--out", str(out), *settings)
    assert res.exit_code == 0, res.output
    assert "part table" in res.output and "GFLOPs linear" in res.output
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 12 and all(r["measured_ms"] > 0 for r in rows)
    # timings on a shared machine are noisy: only the ranking is asserted, loosely
    measured = [r["measured_ms"] for r in rows]
    predicted = [r["predicted_ms"]["part table, refit now"] for r in rows]
    assert spearman(predicted, measured) > 0.5, rows
