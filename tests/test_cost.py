"""Tests for `dimsearch.cost`: measured counts against the published figures, the analytic
estimate against the measured counts, and latency records that say how they were taken."""

from __future__ import annotations

import functools
import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dimsearch import build_model, cost, zoo
from dimsearch.config import (
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
from dimsearch.errors import ArchError

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_figures.json").read_text())
MODELS = REFERENCE["models"]
# Tracing these takes seconds each on a busy 2-core machine; the rest cover the same code paths.
BIG = {"pit_b", "pit_b_distilled", "rest_base", "rest_base_paper", "rest_large", "rest_large_paper"}


def _zoo_params(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


@functools.cache
def _measured(name: str) -> tuple[int, int]:
    """(params, FLOPs) of a zoo model built at 224 with 1000 classes; shared by the tests."""
    model = build_model(zoo.get(name))
    return cost.count_params(model), cost.count_flops(model)


# --- measured counts against the published figures --------------------------------------------


def test_reference_file_covers_the_zoo() -> None:
    assert set(MODELS) == set(zoo.names())


@pytest.mark.parametrize("name", _zoo_params(zoo.names()))
def test_count_matches_official_figures(name: str) -> None:
    params, flops = _measured(name)
    ref = MODELS[name]
    assert params == ref["params"]
    assert flops == pytest.approx(ref["fvcore_flops"], rel=5e-3)


@pytest.mark.parametrize("name", _zoo_params(zoo.names()))
def test_flops_differ_from_official_only_by_the_gap_convention(name: str) -> None:
    # Exact, not approximate: the one difference is ResT's official head, which pools with
    # AdaptiveAvgPool2d (fvcore: 1 FLOP per element) where ours takes a free mean.
    cfg = zoo.get(name)
    h, w = cfg.grids(224)[-1]
    pooled = cfg.stages[-1].dim * h * w if cfg.head.pool == "avg" else 0
    assert _measured(name)[1] == MODELS[name]["fvcore_flops"] - pooled


def test_sdpa_handle_restores_the_attention_matmuls() -> None:
    """Without our handle fvcore drops SDPA silently: PiT-Ti would read 0.50 G, not 0.70 G."""
    from fvcore.nn import FlopCountAnalysis

    model = build_model(zoo.get("pit_ti")).eval()
    ref = MODELS["pit_ti"]
    plain = FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    plain.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert plain.total() == ref["fvcore_flops_without_attention"]
    assert plain.unsupported_ops()["aten::scaled_dot_product_attention"] == 12
    assert _measured("pit_ti")[1] - plain.total() == ref["attention_matmul_flops"]


def test_sdpa_handle_counts_both_matmuls() -> None:
    class CrossAttention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x[..., :8].reshape(2, 3, 5, 8)  # B=2, h=3, N=5, d=8
            k = torch.ones(2, 3, 7, 8)  # M=7
            v = torch.ones(2, 3, 7, 4)  # dv=4
            return F.scaled_dot_product_attention(q, k, v)

    flops = cost.count_flops(CrossAttention(), (1, 1), in_chans=2 * 3 * 5 * 8)
    assert flops == 2 * 3 * 5 * 7 * (8 + 4)


def test_elementwise_ops_are_silent_but_unknown_ops_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = build_model(zoo.get("rest_lite"), num_classes=10, img_size=64)
    with caplog.at_level(logging.WARNING):
        cost.count_flops(model, 64)
    assert "Unsupported operator" not in caplog.text
    # a learned position map resized bicubically has real multiply-adds fvcore cannot count
    caplog.clear()
    pit = build_model(zoo.get("pit_ti"), num_classes=10, img_size=64)
    with caplog.at_level(logging.WARNING):
        cost.count_flops(pit, 80)
    assert "aten::upsample_bicubic2d" in caplog.text


def test_count_flops_leaves_the_model_alone() -> None:
    model = build_model(_tiny(), num_classes=10, img_size=32).train()
    model.stages[0].eval()  # a mixed mode must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost.count_flops(model, 32)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_count_flops_scales_with_batch_and_splits_by_module() -> None:
    model = build_model(_tiny(), num_classes=10, img_size=32)
    total = cost.count_flops(model, 32)
    assert cost.count_flops(model, 32, batch_size=3) == 3 * total
    per_module = cost.count_flops(model, 32, by_module=True)
    assert per_module[""] == total
    assert sum(per_module[name] for name, _ in model.named_children()) == total


def test_count_params_counts_every_parameter() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model[0].weight.requires_grad_(False)
    assert cost.count_params(model) == 3 * 4 + 4 + 2 * 4  # frozen counted, buffers not


# --- the analytic estimate against the measured counts -----------------------------------------


@pytest.mark.parametrize("name", _zoo_params(zoo.names()))
def test_estimate_equals_measurement_on_fixed_points(name: str) -> None:
    est = cost.estimate(zoo.get(name))
    assert (est.params, est.flops) == _measured(name)


def _tiny() -> ArchConfig:
    return ArchConfig(
        stem=StemConfig("patch", patch_size=4, stride=4),
        stages=(StageConfig(depth=1, dim=8, heads=2, pos="le"),) * 2,
        transitions=(TransitionConfig("dwconv"),),
    )


def _random_config(rng: random.Random, i: int) -> tuple[ArchConfig, int]:
    """A small valid config; the i-th cycles through every named choice so 20 cover all."""
    n_stages = 1 + i % 4
    stem = STEMS[i % len(STEMS)]
    patch = rng.choice((4, 7, 8))
    stages, transitions = [], []
    dim = rng.choice((4, 6, 8, 12))
    for s in range(n_stages):
        j = i + s
        if s:
            kind = TRANSITIONS[j % len(TRANSITIONS)]
            transitions.append(TransitionConfig(kind, stride=rng.choice((1, 2, 2, 3))))
            dim = dim * rng.choice((1, 2)) if kind == "dwconv" else rng.choice((4, 6, 8, 12, 16))
        heads = rng.choice([h for h in (1, 2, 3, 4) if dim % h == 0])
        sr = 1 if j % 3 == 0 else rng.choice((2, 3, 4, 8))
        stages.append(
            StageConfig(
                depth=rng.choice((1, 1, 2)),
                dim=dim,
                heads=heads,
                mlp_ratio=rng.choice((1.0, 2.0, 2.5, 4.0)),
                qkv_bias=rng.random() < 0.5,
                sr_ratio=sr,
                sr_kind=KV_REDUCTIONS[(j // 3) % len(KV_REDUCTIONS)],
                # not on a full-attention first stage: its (h, N, N) map is slow to trace
                head_interaction=heads > 1 and rng.random() < 0.6 and (s > 0 or sr > 1),
                pos=POS_ENCODINGS[j % len(POS_ENCODINGS)],
            )
        )
    pool = ("token", "avg")[i % 2]
    cfg = ArchConfig(
        stem=StemConfig(
            stem,
            patch_size=patch,
            stride=rng.choice((patch, 4)),  # >= 4 keeps full attention on stage 1 cheap
            padding=rng.choice((0, 1)),
        ),
        stages=tuple(stages),
        transitions=tuple(transitions),
        head=HeadConfig(pool, distilled=pool == "token" and i % 4 == 2),
        in_chans=rng.choice((1, 3)),
    )
    return cfg, rng.choice((0, 10, 1000))


def _random_configs(n: int = 20, sizes=(224, (160, 97)), seed: int = 0) -> list:
    rng, out, i = random.Random(seed), [], 0
    while len(out) < n:
        cfg, classes = _random_config(rng, i)
        i += 1
        try:
            for size in sizes:
                cfg.grids(size)
        except ArchError:
            continue  # too much downsampling for the smaller size; draw again
        out.append((cfg, classes))
    return out


RANDOM = _random_configs()


def test_random_configs_cover_every_choice() -> None:
    cfgs = [c for c, _ in RANDOM]
    stages = [s for c in cfgs for s in c.stages]
    assert {c.stem.kind for c in cfgs} == set(STEMS)
    assert {t.kind for c in cfgs for t in c.transitions} == set(TRANSITIONS)
    assert {s.pos for s in stages} == set(POS_ENCODINGS)
    assert {s.sr_kind for s in stages if s.sr_ratio > 1} == set(KV_REDUCTIONS)
    assert {s.sr_ratio > 1 for s in stages} == {True, False}
    assert {s.head_interaction for s in stages} == {True, False}
    assert {c.head.pool for c in cfgs} == {"token", "avg"}
    assert any(c.head.distilled for c in cfgs)
    # class tokens joining a reduced key/value grid, with and without head interaction
    reduced = [(s, c) for c in cfgs for s in c.stages if s.sr_ratio > 1 and c.head.num_tokens]
    assert {s.head_interaction for s, _ in reduced} == {True, False}
    assert {n for _, n in RANDOM} == {0, 10, 1000}


@pytest.mark.parametrize("size", [224, (160, 97)], ids=["224", "160x97"])
@pytest.mark.parametrize("index", range(len(RANDOM)))
def test_estimate_equals_measurement_on_random_configs(index: int, size) -> None:
    cfg, classes = RANDOM[index]
    model = build_model(cfg, num_classes=classes, img_size=size)
    est = cost.estimate(cfg, size, num_classes=classes)
    assert est.params == cost.count_params(model)
    assert est.flops == cost.count_flops(model, size)


def test_estimate_parts_match_the_modules() -> None:
    cfg, classes = next((c, n) for c, n in RANDOM if c.head.distilled and n and len(c.stages) > 2)
    size = (160, 97)
    model = build_model(cfg, num_classes=classes, img_size=size)
    est = cost.estimate(cfg, size, num_classes=classes)
    per_module = cost.count_flops(model, size, by_module=True)
    parts = {p.name: p for p in est.parts}
    assert [p.name for p in est.parts] == [
        "stem",
        *(f"stage{i + 1}" for i in range(len(cfg.stages))),
        "head",
    ]
    assert parts["stem"].flops == per_module["stem"]
    for i in range(len(cfg.stages)):
        stage = model.stages[i]
        assert parts[f"stage{i + 1}"].flops == per_module[f"stages.{i}"]
        assert parts[f"stage{i + 1}"].params == cost.count_params(stage)
    head = ["norm", "head"] + (["head_dist"] if cfg.head.distilled else [])
    assert parts["head"].flops == sum(per_module[m] for m in head)
    assert sum(p.params for p in est.parts) == est.params
    assert sum(p.flops for p in est.parts) == est.flops


def test_estimate_reports_grids() -> None:
    est = cost.estimate(zoo.get("pit_ti"))
    assert [p.grid for p in est.parts] == [(27, 27), (27, 27), (14, 14), (7, 7), (7, 7)]
    assert [p.tokens for p in est.parts[1:4]] == [730, 197, 50]
    assert est.to_dict()["parts"][0]["name"] == "stem"
    rest = cost.estimate(zoo.get("rest_lite"))
    assert [p.kv_grid for p in rest.parts[1:5]] == [(7, 7)] * 4


def test_estimate_rejects_impossible_geometry() -> None:
    with pytest.raises(ArchError, match="collapses"):
        cost.estimate(zoo.get("pit_ti"), 8)
    with pytest.raises(ValueError, match="num_classes"):
        cost.estimate(zoo.get("pit_ti"), num_classes=-1)


def test_estimate_needs_no_torch() -> None:
    code = (
        "import sys; from dimsearch import cost, zoo; "
        "assert cost.estimate(zoo.get('rest_lite')).params == 10508300; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- latency --------------------------------------------------------------------------------


def test_measure_latency_on_cpu_records_how_it_was_taken() -> None:
    model = build_model(_tiny(), num_classes=10, img_size=32).train()
    res = cost.measure_latency(model, img_size=32, warmup=1, repeats=5)
    assert model.training  # mode restored
    assert res.median_ms > 0
    assert res.p10_ms <= res.median_ms <= res.p90_ms
    assert res.min_ms <= res.mean_ms
    assert (res.device, res.batch_size, res.repeats, res.img_size) == ("cpu", 1, 5, (32, 32))
    assert res.throughput == pytest.approx(1e3 / res.median_ms)
    assert res.device_name and res.torch_version == torch.__version__
    assert res.num_threads >= 1 and res.dtype == "float32"
    assert json.loads(json.dumps(res.to_dict()))["img_size"] == [32, 32]


def test_measure_latency_autocast_is_recorded() -> None:
    model = build_model(_tiny(), num_classes=10, img_size=32)
    res = cost.measure_latency(
        model, batch_size=2, img_size=32, warmup=0, repeats=1, amp_dtype=torch.bfloat16
    )
    assert (res.dtype, res.batch_size, res.repeats) == ("bfloat16", 2, 1)
    assert res.p10_ms == res.median_ms == res.p90_ms


def test_measure_latency_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="repeats"):
        cost.measure_latency(nn.Conv2d(3, 1, 1), repeats=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_latency_on_cuda_defaults_to_a_large_batch() -> None:
    model = build_model(_tiny(), num_classes=10, img_size=32)
    res = cost.measure_latency(
        model, "cuda", img_size=32, warmup=1, repeats=3, amp_dtype=torch.bfloat16
    )
    assert (res.batch_size, res.dtype) == (128, "bfloat16")
    assert res.device.startswith("cuda") and res.device_name == torch.cuda.get_device_name()
    assert 0 < res.p10_ms <= res.median_ms <= res.p90_ms
