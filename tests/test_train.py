"""Proxy training: settings, the trainer's promises, proxy-check and bench train (on CPU)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import dimsearch.cli.train_cmds  # noqa: F401  (registers proxy-check and bench train)
from dimsearch import zoo
from dimsearch.cli import app
from dimsearch.config import ArchConfig, HeadConfig, StageConfig, StemConfig, TransitionConfig
from dimsearch.data import DataConfig, ProxyData, load_data
from dimsearch.errors import TrainingError
from dimsearch.train import (
    EpochResult,
    TrainConfig,
    TrainResult,
    prepare,
    proxy_check,
    train_proxy,
)
from dimsearch.train import step as step_mod


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One CPU thread: on a shared 2-core machine two OpenMP threads that wait for each
    other run a small model up to 10x slower, and one thread keeps results repeatable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_arch(stem: str = "patch") -> ArchConfig:
    """Two stages, widths 32/64, one block each: the smallest hierarchical model."""
    return ArchConfig(
        stem=StemConfig("patch", patch_size=4, stride=4) if stem == "patch" else StemConfig(stem),
        stages=(
            StageConfig(depth=1, dim=32, heads=2, pos="pa"),
            StageConfig(depth=1, dim=64, heads=4),
        ),
        transitions=(TransitionConfig("dwconv"),),
        head=HeadConfig("avg"),
    )


@pytest.fixture(scope="module")
def tiny_data() -> ProxyData:
    return load_data(DataConfig(img_size=16, num_classes=4, train_per_class=16, val_per_class=8))


def run_cli(*args: str) -> object:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# ---------------------------------------------------------------------------------------------
# TrainConfig


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"epoch": 3}, r"space\.train\.epoch is not a training setting"),
        ({"epochs": 2.5}, r"space\.train\.epochs must be an integer in \[1, 1000\], got 2\.5"),
        ({"epochs": 10**30}, r"space\.train\.epochs must be an integer in \[1, 1000\], got 1000"),
        ({"batch_size": 0}, r"space\.train\.batch_size must be an integer in \[1, 65536\]"),
        ({"lr": "fast"}, r"space\.train\.lr must be a number in \(0, 10\], got 'fast'"),
        ({"label_smoothing": 1.0}, r"space\.train\.label_smoothing must be a number in \[0, 1\)"),
        ({"drop_path": True}, r"space\.train\.drop_path must be null or in \[0, 1\)"),
        ({"amp": "fp16"}, r"space\.train\.amp must be one of \['auto', 'bf16', 'fp32'\]"),
        ({"augment": "jitter"}, r"space\.train\.augment must be one of"),
        ({"compile": "yes"}, r"space\.train\.compile must be true or false"),
        (
            {"num_threads": 0},
            r"space\.train\.num_threads must be null or an integer in \[1, 1024\]",
        ),
        ({"min_lr": 0.1, "lr": 0.01}, r"`space\.train\.min_lr <= space\.train\.lr` must hold"),
        ({"mixup": 0.8, "batch_size": 15}, r"space\.train\.batch_size must be even"),
    ],
)
def test_train_config_errors_name_the_key(mapping: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        TrainConfig.from_dict(mapping, where="space.train")


def test_train_config_round_trips_and_reads_yaml_numbers() -> None:
    cfg = TrainConfig.from_dict({"lr": "5e-4", "warmup_epochs": 2, "drop_path": 0, "mixup": 0.2})
    assert cfg.lr == 5e-4 and cfg.warmup_epochs == 2.0 and cfg.drop_path == 0.0 and cfg.mixes
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(None) == TrainConfig()
    with pytest.raises(
        TrainingError, match=r"train\.epochs must be an integer in \[1, 1000\], got 0"
    ):
        TrainConfig(epochs=0)


# ---------------------------------------------------------------------------------------------
# the pieces a run is built from


def test_prepare_builds_for_the_data_and_exempts_norms_from_decay() -> None:
    arch = tiny_arch().replace(stages=(StageConfig(1, 32, 2, pos="le"), StageConfig(1, 64, 4)))
    cfg = TrainConfig(drop_path=0.1, weight_decay=0.05)
    trainer = prepare(
        arch, cfg, num_classes=7, img_size=16, channels=1, steps_per_epoch=5, device="cpu"
    )
    model = trainer.model
    assert model.cfg.in_chans == 1 and model.cfg.drop_path_rate == 0.1
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 7)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {
        names[id(p)]
        for g in trainer.optimizer.param_groups
        if g["weight_decay"] > 0
        for p in g["params"]
    }
    exempt = {
        names[id(p)]
        for g in trainer.optimizer.param_groups
        if g["weight_decay"] == 0
        for p in g["params"]
    }
    assert any(n.endswith("pos_embed") for n in exempt)
    assert all(n.endswith(".weight") and "norm" not in n for n in decayed)
    assert all(model.get_parameter(n).ndim > 1 for n in decayed)
    assert exempt and decayed and len(exempt) + len(decayed) == len(names)


def test_schedule_warms_up_peaks_and_decays_to_min_lr() -> None:
    cfg = TrainConfig(epochs=4, lr=1e-3, min_lr=1e-5, warmup_epochs=1)
    trainer = prepare(
        tiny_arch(), cfg, num_classes=4, img_size=16, channels=3, steps_per_epoch=10, device="cpu"
    )
    lrs = [trainer.lr]
    for update in range(1, 41):
        trainer.scheduler.step_update(update)
        lrs.append(trainer.lr)
    assert lrs[0] == pytest.approx(1e-5)  # warm-up starts at min_lr
    assert lrs[10] == pytest.approx(1e-3)  # peak after one epoch of 10 steps
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[40] == pytest.approx(1e-5)  # the cosine ends at the last step


def test_one_epoch_run_still_reaches_its_peak() -> None:
    cfg = TrainConfig(epochs=1, lr=1e-3, warmup_epochs=1)
    trainer = prepare(
        tiny_arch(), cfg, num_classes=4, img_size=16, channels=3, steps_per_epoch=10, device="cpu"
    )
    peak = 0.0
    for update in range(1, 11):
        trainer.scheduler.step_update(update)
        peak = max(peak, trainer.lr)
    assert peak == pytest.approx(1e-3)


# ---------------------------------------------------------------------------------------------
# train_proxy


def curve_numbers(result: TrainResult) -> list[tuple[float, ...]]:
    """Everything in the curve except wall-clock figures."""
    return [(e.epoch, e.train_loss, e.val_loss, e.val_acc, e.lr) for e in result.curve]


def test_same_seed_gives_the_same_curve_on_cpu(tiny_data: ProxyData) -> None:
    # drop path and mixup draw from torch's and numpy's generators: both must be seeded
    cfg = TrainConfig(epochs=2, batch_size=16, drop_path=0.1, mixup=0.4, seed=3)
    first = train_proxy(tiny_arch(), tiny_data, cfg, device="cpu")
    second = train_proxy(tiny_arch(), tiny_data, cfg, device="cpu")
    other = train_proxy(tiny_arch(), tiny_data, cfg.replace(seed=4), device="cpu")
    assert curve_numbers(first) == curve_numbers(second)
    assert curve_numbers(first) != curve_numbers(other)
    assert first.epochs_run == 2 and not first.stopped_early and first.device == "cpu"
    assert [e.epoch for e in first.curve] == [1, 2]
    assert all(math.isfinite(e.train_loss) and 0 <= e.val_acc <= 100 for e in first.curve)
    assert first.final_acc == first.curve[-1].val_acc
    assert first.best_acc == max(e.val_acc for e in first.curve)
    assert json.loads(json.dumps(first.to_dict()))["curve"][0]["epoch"] == 1


def test_small_model_beats_chance_on_synthetic_data() -> None:
    """10 classes (chance 10%) that differ in which textured parts appear and where.

    Seeds 0-6 of this setting end at 36-63% (the first ~2 epochs are a plateau before the
    model finds the parts), so > 30% is a margin that a working trainer clears and a broken
    one (no learning, wrong labels, a stuck schedule) does not.
    """
    data = load_data(DataConfig(img_size=32, num_classes=10, train_per_class=300, val_per_class=50))
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-3, warmup_epochs=0.5, augment="none", seed=0)
    result = train_proxy(tiny_arch(stem="conv3"), data, cfg, device="cpu")
    accs = [e.val_acc for e in result.curve]
    assert result.final_acc > 30, accs
    assert result.curve[-1].train_loss < result.curve[0].train_loss - 0.3


def test_non_finite_loss_stops_the_run_with_epoch_step_and_value(
    tiny_data: ProxyData, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NanOnThirdStep(torch.nn.CrossEntropyLoss):
        calls = 0

        def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            NanOnThirdStep.calls += 1
            loss = super().forward(logits, y)
            return loss * float("nan") if NanOnThirdStep.calls == 3 else loss

    monkeypatch.setattr(step_mod, "_loss", lambda cfg: NanOnThirdStep())
    cfg = TrainConfig(epochs=2, batch_size=16)
    with pytest.raises(TrainingError, match=r"training loss is nan at epoch 1, step 3 of 4"):
        train_proxy(tiny_arch(), tiny_data, cfg, device="cpu")
    assert NanOnThirdStep.calls == 3  # stopped at once, not at the end of the epoch


def test_a_non_finite_loss_ends_in_a_training_error(tiny_data: ProxyData) -> None:
    """Inputs that go non-finite (here a zero std in the normalisation: the learning rate that
    once did it, 1e6, is now refused by train.lr's bound) stop training with the epoch and
    step, instead of training on NaN."""
    import dataclasses

    data = dataclasses.replace(tiny_data, std=(0.0,) * len(tiny_data.std))
    cfg = TrainConfig(epochs=2, batch_size=16, warmup_epochs=0, clip_grad=None)
    with pytest.raises(TrainingError, match=r"training loss is (nan|inf) at epoch \d, step \d"):
        train_proxy(tiny_arch(), data, cfg, device="cpu")


def test_report_returning_true_stops_early(tiny_data: ProxyData) -> None:
    seen: list[EpochResult] = []

    def report(epoch: EpochResult) -> bool:
        seen.append(epoch)
        return epoch.epoch == 2

    cfg = TrainConfig(epochs=4, batch_size=16)
    result = train_proxy(tiny_arch(), tiny_data, cfg, device="cpu", report=report)
    assert [e.epoch for e in seen] == [1, 2] and result.curve == seen
    assert result.stopped_early and result.epochs_run == 2

    seen.clear()
    full = train_proxy(tiny_arch(), tiny_data, cfg.replace(epochs=2), report=seen.append)
    assert not full.stopped_early and full.epochs_run == 2 and len(seen) == 2


def test_an_architecture_that_cannot_train_at_the_size_is_named(tiny_data: ProxyData) -> None:
    # ResT-Lite at 16 px: a 1x1 grid in stages 3 and 4, where head interaction normalises a
    # one-element attention map
    with pytest.raises(TrainingError, match=r"stage 3 uses head interaction on a 1x1 token grid"):
        train_proxy(zoo.get("rest_lite"), tiny_data, TrainConfig(epochs=1, batch_size=16))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_training_error(tiny_data: ProxyData) -> None:
    with pytest.raises(TrainingError, match=r"device 'cuda' was asked for, but torch sees no"):
        train_proxy(tiny_arch(), tiny_data, TrainConfig(epochs=1), device="cuda")


def test_grey_images_build_a_one_channel_model(tiny_data: ProxyData) -> None:
    grey = ProxyData(
        name="grey",
        train=type(tiny_data.train)(tiny_data.train.images[..., :1].copy(), tiny_data.train.labels),
        val=type(tiny_data.val)(tiny_data.val.images[..., :1].copy(), tiny_data.val.labels),
        num_classes=4,
        img_size=16,
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        class_names=tiny_data.class_names,
    )
    result = train_proxy(tiny_arch(), grey, TrainConfig(epochs=1, batch_size=16), device="cpu")
    assert result.epochs_run == 1


# ---------------------------------------------------------------------------------------------
# proxy-check


def test_proxy_check_ranks_against_published_top1(tiny_data: ProxyData) -> None:
    runs = []
    result = proxy_check(
        ["pit_ti", "pit_xs"],
        [0, 1],
        data=tiny_data,
        train=TrainConfig(epochs=1, batch_size=16),
        device="cpu",
        on_run=lambda name, seed, r: runs.append((name, seed, r.final_acc)),
    )
    assert [(n, s) for n, s, _ in runs] == [
        ("pit_ti", 0),
        ("pit_ti", 1),
        ("pit_xs", 0),
        ("pit_xs", 1),
    ]
    pit = result.rows[0]
    assert pit.label == "PiT-Ti" and pit.top1 == 73.0 and pit.accs == (runs[0][2], runs[1][2])
    assert pit.spread == pytest.approx(abs(runs[0][2] - runs[1][2]))
    assert result.max_spread == max(r.spread for r in result.rows)
    means = [r.mean for r in result.rows]
    if means[0] == means[1]:
        assert result.tau is None and "undefined" in result.verdict()
    else:  # two models: tau is +1 if PiT-Ti (73.0) scores below PiT-XS (78.1), else -1
        assert result.tau == (1.0 if means[0] < means[1] else -1.0)
        assert "Kendall tau" in result.verdict()
    assert json.loads(json.dumps(result.to_dict()))["seeds"] == [0, 1]


def test_proxy_check_cli_runs_end_to_end() -> None:
    out = run_cli(
        "proxy-check",
        "--models", "pit_ti,pit_xs,rest_lite",
        "--epochs", "1",
        "--img-size", "40",
        "--classes", "4",
        "--train-per-class", "8",
        "--val-per-class", "4",
        "--batch", "16",
        "--device", "cpu",
        "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    for text in ("PiT-Ti", "PiT-XS", "ResT-Lite", "seed 0", "seed 1", "Kendall tau", "spread"):
        assert text in out.output
    payload = json.loads(out.output.strip().splitlines()[-1])
    assert [r["name"] for r in payload["rows"]] == ["pit_ti", "pit_xs", "rest_lite"]
    assert payload["train"]["epochs"] == 1 and len(payload["rows"][0]["accs"]) == 2


def test_proxy_check_reads_a_space_file_and_reports_bad_keys(tmp_path: Path) -> None:
    space = Path(__file__).parents[1] / "spaces" / "pit.yaml"  # data: 32 px, 10 classes
    small = ("--train-per-class", "4", "--val-per-class", "2", "--epochs", "1", "--batch", "8")
    out = run_cli(
        "proxy-check", "--space", str(space), "--models", "pit_ti", "--seeds", "1", *small
    )
    assert out.exit_code == 0, out.output
    assert "synthetic-10c-32px" in out.output and "Kendall tau" in out.output

    broken = tmp_path / "broken.yaml"
    broken.write_text(space.read_text().replace("warmup_epochs: 1}", "warmup_epochs: 1, epoch: 3}"))
    out = run_cli("proxy-check", "--space", str(broken), "--models", "pit_ti")
    assert out.exit_code == 2 and "train.epoch is not a training setting" in out.output


def test_proxy_check_rejects_an_unknown_model() -> None:
    out = run_cli("proxy-check", "--models", "pit_nano", "--epochs", "1")
    assert out.exit_code == 2 and "unknown zoo model 'pit_nano'" in out.output


@pytest.mark.slow
def test_proxy_check_default_suite_on_synthetic_data() -> None:
    """The five default fixed points, two seeds, at the default 48 px (ResT needs > 32)."""
    out = run_cli(
        "proxy-check", "--epochs", "2", "--train-per-class", "50", "--val-per-class", "20",
        "--batch", "32", "--device", "cpu", "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    for label in ("PiT-Ti", "PiT-XS", "PiT-S", "ResT-Lite", "ResT-Small"):
        assert label in out.output
    assert "Kendall tau (mean proxy acc vs ImageNet top-1)" in out.output
    payload = json.loads(out.output.strip().splitlines()[-1])
    assert payload["data_name"] == "synthetic-10c-48px" and len(payload["rows"]) == 5


# ---------------------------------------------------------------------------------------------
# bench train


def test_bench_train_cli_on_cpu() -> None:
    out = run_cli(
        "bench", "train", "--model", "pit_ti", "--img-size", "32", "--batch", "16",
        "--steps", "3", "--device", "cpu", "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    for text in ("(a) ours", "(b) ours", "(c) plain timm pit_ti_224", "ratio a/b", "ratio a/c"):
        assert text in out.output
    figures = json.loads(out.output.strip().splitlines()[-1])
    assert figures["ours"] > 0 and figures["random"] > 0 and figures["timm"] > 0
    assert figures["ratio_data"] == pytest.approx(figures["ours"] / figures["random"])
    assert figures["mfu_ours"] is None and figures["macs_per_image"] > 0  # CPU: no MFU


def test_bench_train_skips_timm_for_rest() -> None:
    out = run_cli(
        "bench", "train", "--model", "rest_lite", "--img-size", "40", "--batch", "8",
        "--steps", "1", "--warmup-steps", "0", "--device", "cpu",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "ratio a/b" in out.output and "ratio a/c" not in out.output
    assert "rest_lite has no timm equivalent" in out.output


# -- Kendall tau of proxy-check: known answers with four or more models --------------------------

_TOP1 = [73.0, 78.1, 80.9, 82.0]  # PiT-Ti, ResT-Lite-ish, PiT-S, PiT-B: all distinct


@pytest.mark.parametrize(
    ("means", "tau"),
    [
        ([60.0, 61.0, 62.0, 63.0], 1.0),  # same order as ImageNet
        ([63.0, 62.0, 61.0, 60.0], -1.0),  # reversed
        ([61.0, 60.0, 62.0, 63.0], 4 / 6),  # one swapped pair of six: (5 - 1) / 6
        # a tie in the proxy: tau-b = (5 - 0) / sqrt((6 - 1) * (6 - 0))
        ([60.0, 60.0, 62.0, 63.0], 5 / 30**0.5),
    ],
)
def test_proxy_check_kendall_tau_has_known_answers(means: list[float], tau: float) -> None:
    from dimsearch.train.proxy_check import _kendall

    got, p = _kendall(means, _TOP1)
    assert got == pytest.approx(tau, abs=1e-12)
    assert p is not None and 0.0 <= p <= 1.0


def test_proxy_check_kendall_tau_ignores_models_without_a_published_figure() -> None:
    from dimsearch.train.proxy_check import _kendall

    # the unpublished model (None) would reverse the order if it counted
    tau, _ = _kendall([60.0, 61.0, 99.0, 62.0, 63.0], [73.0, 78.1, None, 80.9, 82.0])
    assert tau == pytest.approx(1.0)
    assert _kendall([60.0, 60.0, 60.0, 60.0], _TOP1) == (None, None)  # all tied: undefined


@pytest.mark.parametrize(
    ("tau", "reading"),
    [
        (0.7, "much as ImageNet does"),
        (0.69, "partly agrees"),
        (0.3, "partly agrees"),
        (0.29, "unrelated"),
        (-0.29, "unrelated"),
        (-0.3, "tends to reverse"),
        (None, "undefined"),
    ],
)
def test_proxy_check_verdict_thresholds(tau: float | None, reading: str) -> None:
    from dimsearch.train.proxy_check import _tau_sentence

    sentence = _tau_sentence(tau, 4)
    assert reading in sentence
    if tau is not None:
        assert "steps of 0.33" in sentence  # 4 models: 6 pairs, tau moves by 2/6
