"""The generator: exact parameter counts, equal outputs to timm / official code, any kind runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from conftest import random_archs

from dimsearch import ArchConfig, ArchError, StageConfig, build_model, convert_state_dict, zoo
from dimsearch.zoo import rest_config

DATA = Path(__file__).parent / "data"

# Exact counts of the official code / timm (ARCHITECTURES.md, fixed_points.json); the
# *_paper entries are ResT with the 7x7 stem, which gives the paper's 10.49M ... 51.63M.
PARAMS = {
    "pit_ti": 4_847_272,
    "pit_xs": 10_618_888,
    "pit_s": 23_461_912,
    "pit_b": 73_764_840,
    "pit_ti_distilled": 5_104_336,
    "pit_xs_distilled": 11_003_984,
    "pit_s_distilled": 24_039_056,
    "pit_b_distilled": 74_790_096,
    "rest_lite": 10_508_300,
    "rest_small": 13_679_708,
    "rest_base": 30_327_052,
    "rest_large": 51_676_156,
    "rest_lite_paper": 10_489_196,
    "rest_small_paper": 13_660_604,
    "rest_base_paper": 30_277_660,
    "rest_large_paper": 51_626_764,
}


def test_registry_is_complete() -> None:
    assert set(zoo.names()) == set(PARAMS)
    assert all(zoo.info(n).top1 for n in zoo.names())


@pytest.mark.parametrize("name", list(PARAMS))
def test_exact_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = build_model(zoo.get(name))
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


TIMM = [e.name for e in zoo.entries() if e.timm]  # the zoo's record of timm twins


def test_every_pit_names_its_timm_twin() -> None:
    assert [n for n in PARAMS if n.startswith("pit")] == TIMM
    assert zoo.timm_name("pit_s_distilled") == "pit_s_distilled_224"


@pytest.mark.parametrize("name", TIMM)
@pytest.mark.parametrize("img_size", [224, 160])
def test_pit_equals_timm(name: str, img_size: int) -> None:
    reference = timm.create_model(zoo.timm_name(name), img_size=img_size).eval()
    cfg = zoo.get(name)
    ours = build_model(cfg, img_size=img_size).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), cfg, source="timm"))
    x = torch.randn(2, 3, img_size, img_size)
    with torch.inference_mode():
        want, got = reference(x), ours(x)
    assert want.std() > 0.1  # random weights still give non-trivial logits
    # the same float32 ops in the same order on the same threads: equal bit for bit
    assert torch.equal(got, want), (got - want).abs().max()


def test_pit_official_layout_converts_too() -> None:
    """naver-ai/pit keeps the pools in `pools.{i}`; timm moved them into `transformers.{i+1}`."""
    reference = timm.create_model("pit_ti_224").eval()
    official = {}
    for k, v in reference.state_dict().items():
        if ".pool." in k:
            i = int(k.split(".")[1])
            k = f"pools.{i - 1}." + k.split(".pool.")[1]
        official[k] = v
    cfg = zoo.get("pit_ti")
    ours = build_model(cfg).eval()
    ours.load_state_dict(convert_state_dict({"model": official}, cfg, source="official"))
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(ours(x), reference(x))


# Max |diff| measured against the vector's float32 logits (|logit| <= 0.29): 2.8e-7 / 1.5e-7
# (224 / 160 px) on one thread, 2.4e-7 / 1.23e-6 on 2 to 16 threads, where the summation
# order of the intra-op parallel kernels differs from the machine that made the vector.
REST_VECTOR_ATOL = 2e-6


@pytest.mark.parametrize("threads", [1, 4])
def test_rest_reproduces_the_official_test_vector(threads: int) -> None:
    """Official ResT weights (norms and BN statistics randomised) and logits at 224 and 160."""
    vec = torch.load(DATA / "rest_tiny.pt", weights_only=True)
    c = vec["config"]
    cfg = rest_config(
        tuple(c["embed_dims"]), tuple(c["depths"]), tuple(c["num_heads"]), tuple(c["sr_ratios"])
    )
    model = build_model(cfg, num_classes=c["num_classes"]).eval()
    model.load_state_dict(convert_state_dict(vec["state_dict"], cfg, source="official"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for x, want in (("input", "output"), ("input_160", "output_160")):
                torch.testing.assert_close(model(vec[x]), vec[want], atol=REST_VECTOR_ATOL, rtol=0)
    finally:
        torch.set_num_threads(before)


def test_conversion_errors_name_the_keys() -> None:
    from dimsearch import ConversionError

    sd = timm.create_model("pit_ti_224").state_dict()
    with pytest.raises(ConversionError, match="missing .*head_dist"):
        convert_state_dict(sd, zoo.get("pit_ti_distilled"), source="timm")
    with pytest.raises(ConversionError, match="timm has PiT only"):
        convert_state_dict({"stage1.0.attn.q.weight": torch.zeros(1)}, zoo.get("rest_lite"), "timm")
    sd["transformers.0.blocks.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="unexpected .*extra"):
        convert_state_dict(sd, zoo.get("pit_ti"), source="timm")


@pytest.mark.parametrize("cfg", random_archs(24, seed=1), ids=lambda c: f"{len(c.stages)}st")
def test_every_kind_builds_and_runs(cfg) -> None:
    model = build_model(cfg, num_classes=7, img_size=64).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64))
        other = model(torch.randn(1, 3, 80, 48))  # another (non-square) size runs too
    assert out.shape == (2, 7) and other.shape == (1, 7)
    assert torch.isfinite(out).all()


def _graph_breaks(model: torch.nn.Module, x: torch.Tensor) -> list[str]:
    import torch._dynamo as dynamo

    explained = dynamo.explain(model)(x)
    return [str(b.reason) for b in explained.break_reasons]


@pytest.mark.parametrize(
    "cfg",
    [zoo.get("pit_ti_distilled"), zoo.get("rest_lite_paper"), *random_archs(4, seed=2)],
    ids=["pit_ti_distilled", "rest_lite_paper", "rand0", "rand1", "rand2", "rand3"],
)
def test_training_forward_is_one_graph_for_torch_compile(cfg) -> None:
    """A graph break would split ``torch.compile`` (used by GPU training) into pieces with
    Python between them; every kind must trace whole, also when the learned position map is
    resized for another input size."""
    model = build_model(cfg, num_classes=5, img_size=64).train()
    assert _graph_breaks(model, torch.randn(2, 3, 64, 64)) == []
    assert _graph_breaks(model, torch.randn(2, 3, 80, 48)) == []


@pytest.mark.slow
def test_compiled_training_step_equals_eager() -> None:
    """What ``train.compile`` runs on a GPU, checked on the CPU with inductor: same loss and
    the same gradients as the eager model (about two minutes of compiling on two cores)."""
    model = build_model(zoo.get("pit_ti"), num_classes=10, img_size=32).train()
    compiled = torch.compile(model, fullgraph=True)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    grads = []
    for forward in (model, compiled):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = grads
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_training_mode_backward_and_distilled_training_output() -> None:
    model = build_model(zoo.get("pit_ti_distilled"), num_classes=5, img_size=64).train()
    model.distilled_training = True
    logits, dist = model(torch.randn(2, 3, 64, 64))
    (logits.sum() + dist.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_learned_position_map_is_resized_for_other_inputs() -> None:
    model = build_model(zoo.get("pit_ti"), num_classes=3, img_size=224).eval()
    assert model.stages[0].pos.pos_embed.shape[-2:] == (27, 27)
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 160, 160)).shape == (1, 3)


def test_bad_resolution_fails_at_build_not_in_forward() -> None:
    with pytest.raises(ArchError, match="collapses to 0x0 .* img_size=8x8"):
        build_model(zoo.get("pit_ti"), img_size=8)
    one_stage = ArchConfig(stages=(StageConfig(1, 32, 2, sr_ratio=3),))
    build_model(one_stage, img_size=32)  # 3x3 grid: fine
    with pytest.raises(ArchError, match="sr_ratio=3 reduces the 1x1 grid to 0x0"):
        build_model(one_stage, img_size=16)


def test_reference_figures_are_the_test_data() -> None:
    """The counts above are the ones recorded in tests/data (copied from shared/reference)."""
    ref = json.loads((DATA / "reference_figures.json").read_text())
    for name, figures in ref["models"].items():
        assert PARAMS[name] == figures["params"]


def test_median_interval_is_the_order_statistic_interval() -> None:
    from dimsearch.stats import median_interval

    # 15 values: the 4th and 12th bracket the median with probability 1 - 2 * 576 / 2**15
    low, high, coverage = median_interval([float(v) for v in range(15, 0, -1)])
    assert (low, high) == (4.0, 12.0) and coverage == pytest.approx(1 - 2 * 576 / 2**15)
    assert median_interval(list(range(1, 101)))[:2] == (40, 61)  # the textbook ranks
    assert median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0, 0.75)  # too few: whole range


def test_bench_generator_times_both_models_in_pairs() -> None:
    from dimsearch.models.benchmark import bench_generator

    res = bench_generator("pit_ti", "cpu", batch_size=1, img_size=64, rounds=3, repeats=1)
    d = res.to_dict()
    assert (res.timm_model, res.device, res.dtype) == ("pit_ti_224", "cpu", "fp32")
    assert len(res.ours) == len(res.timm) == len(d["ratios"]) == 3
    assert d["ratios"] == pytest.approx([a / b for a, b in zip(res.ours, res.timm, strict=True)])
    assert d["ratio_low"] <= d["ratio"] <= d["ratio_high"]
    assert d["verdict"] in ("faster", "slower", "same within noise")
    with pytest.raises(ArchError, match="no timm twin for 'rest_lite'"):
        bench_generator("rest_lite", "cpu", rounds=1)
