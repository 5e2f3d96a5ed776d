"""ArchConfig: validation states the rule; serialisation round-trips exactly."""

from __future__ import annotations

import json

import pytest
from conftest import random_archs

from dimsearch import ArchConfig, ArchError, StageConfig, TransitionConfig, zoo
from dimsearch.config import (
    KV_REDUCTIONS,
    POS_ENCODINGS,
    STEMS,
    TRANSITIONS,
    HeadConfig,
    StemConfig,
)


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_configs_round_trip_through_json(name: str) -> None:
    cfg = zoo.get(name)
    again = ArchConfig.from_json(cfg.to_json())
    assert again == cfg
    assert hash(again) == hash(cfg)


def test_random_configs_round_trip() -> None:
    for cfg in random_archs(30, seed=3):
        assert ArchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"depth": 1, "dim": 30, "heads": 4}, "`dim % heads == 0` must hold, got dim=30, heads=4"),
        ({"depth": 0, "dim": 32, "heads": 2}, "stage.depth must be a positive integer, got 0"),
        ({"depth": 1, "dim": 32, "heads": 2, "pos": "sine"}, "stage.pos must be one of"),
        ({"depth": 1, "dim": 32, "heads": 2, "sr_kind": "conv"}, "stage.sr_kind must be one of"),
        ({"depth": 1, "dim": 32, "heads": 1, "head_interaction": True}, "needs heads > 1"),
        ({"depth": 1, "dim": 32, "heads": 2, "sr_ratio": 0}, "stage.sr_ratio"),
    ],
)
def test_stage_rules(kwargs: dict, needle: str) -> None:
    with pytest.raises(ArchError, match=None) as err:
        StageConfig(**kwargs)
    assert needle in str(err.value)


def test_unknown_kinds_list_the_valid_ones() -> None:
    with pytest.raises(ArchError) as err:
        StemConfig("conv5")
    assert str(err.value) == "stem.kind must be one of ['patch', 'conv3', 'conv7'], got 'conv5'"
    with pytest.raises(ArchError, match="transition.kind must be one of"):
        TransitionConfig("strided")
    with pytest.raises(ArchError, match="head.distilled needs head.pool='token'"):
        HeadConfig("avg", distilled=True)


def test_transition_count_and_dwconv_multiplier() -> None:
    s1, s2 = StageConfig(1, 32, 2), StageConfig(1, 48, 2)
    with pytest.raises(ArchError, match="`len\\(transitions\\) == len\\(stages\\) - 1`"):
        ArchConfig(stages=(s1, s2))
    with pytest.raises(ArchError, match="stages\\[1\\].dim % stages\\[0\\].dim == 0"):
        ArchConfig(stages=(s1, s2), transitions=(TransitionConfig("dwconv"),))
    ArchConfig(stages=(s1, s2), transitions=(TransitionConfig("avg"),))  # any widths


def test_grid_collapse_is_reported_with_the_resolution() -> None:
    cfg = zoo.get("pit_ti")
    assert cfg.grids(224) == [(27, 27), (14, 14), (7, 7)]
    with pytest.raises(ArchError, match="stage 1 token grid collapses to 0x0 .* img_size=8x8"):
        cfg.grids(8)
    rest = zoo.get("rest_lite")
    assert rest.grids(224) == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert [rest.kv_grid(i, g) for i, g in enumerate(rest.grids(224))] == [(7, 7)] * 4


def test_from_dict_rejects_unknown_keys_by_name() -> None:
    d = zoo.get("pit_ti").to_dict()
    d["stages"][1]["width"] = 3
    with pytest.raises(ArchError, match=r"stages\[1\] has unknown keys \['width'\]"):
        ArchConfig.from_dict(d)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("stages", 0, "mlp_ratio", float("inf")), r"stage.mlp_ratio must be a finite number"),
        (("stages", 0, "mlp_ratio", float("nan")), r"stage.mlp_ratio must be a finite number"),
        ((None, None, "norm_eps", float("inf")), r"norm_eps must be a finite number > 0"),
        (("stages", 2, "dim", None), r"stages\[2\] is missing the required keys \['dim'\]"),
        ((None, None, "stages", 3), r"ArchConfig.stages must be a list, got 3"),
    ],
)
def test_from_dict_refuses_a_broken_record_with_an_arch_error(change, message) -> None:
    """A stored trial's ``arch`` may be edited by hand; every way of breaking it is an
    `ArchError` naming the key (export and show rely on that), never a TypeError later."""
    d = zoo.get("pit_ti").to_dict()
    part, index, key, value = change
    target = d if part is None else d[part][index]
    if value is None:
        del target[key]
    else:
        target[key] = value
    with pytest.raises(ArchError, match=message):
        ArchConfig.from_dict(d)


def test_choice_tables_match_the_layer_tables() -> None:
    from dimsearch.models import hvit

    assert set(STEMS) == set(hvit.STEMS)
    assert set(TRANSITIONS) == set(hvit.TRANSITIONS)
    assert set(POS_ENCODINGS) == set(hvit.POS_ENCODINGS)
    assert set(KV_REDUCTIONS) == set(hvit.KV_REDUCTIONS)


def test_conv3_stem_needs_a_hidden_width() -> None:
    with pytest.raises(ArchError, match="`stages\\[0\\].dim >= 2` must hold, got 1"):
        ArchConfig(stem=StemConfig("conv3"), stages=(StageConfig(1, 1, 1),))
