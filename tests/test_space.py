"""Search spaces: the shipped ones load and sample valid models; bad files fail with the key named.

Every test over ``spaces/*.yaml`` runs for each shipped file, so a new space is covered the
moment it is added. The bad-file cases start from ``spaces/pit.yaml``, change one thing and
check that the error names the file and the exact key path a user would have to fix.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import FixedTrial, TrialState

from dimsearch import build_model, cost, zoo
from dimsearch.errors import ArchError, DimsearchError, SpaceError
from dimsearch.search import SearchSpace, load_space, space_from_dict
from dimsearch.search._params import PARAMS
from dimsearch.search.budgets import Budgets

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "spaces").glob("*.yaml"))
PIT = ROOT / "spaces" / "pit.yaml"
_NAME = re.compile(r"^(s(?P<stage>\d+)\.)?(?P<key>[a-z_]+)$")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _ids(p: Path) -> str:
    return p.stem


def test_every_space_is_tested() -> None:
    assert {p.stem for p in SPACES} >= {"pit", "rest", "hvit"}


# -- the shipped spaces --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SPACES, ids=_ids)
def test_space_loads_and_round_trips_through_to_dict(path: Path) -> None:
    space = load_space(path)
    assert space.name == path.stem
    assert space.path == path
    assert space.objectives[0] == "accuracy"
    assert len(space.directions) == len(space.objectives)
    assert space.directions[0] == "maximize"
    data = space.to_dict()
    json.dumps(data)  # stored in the study's user attrs
    assert space_from_dict(data, source="roundtrip") == space


@pytest.mark.parametrize("path", SPACES, ids=_ids)
def test_every_seed_round_trips_and_fits_the_budgets(path: Path) -> None:
    space = load_space(path)
    assert space.seeds
    for name in space.seeds:
        cfg = zoo.get(name)
        params = space.params_of(cfg)
        assert all(not space.params[p].fixed for p in params)  # constants are not params
        assert space.sample(FixedTrial(params)) == cfg.replace(name="")
        assert space.check_budgets(cfg) is None, name


@pytest.mark.parametrize("path", SPACES, ids=_ids)
def test_random_samples_are_valid_and_the_smallest_trains(path: Path) -> None:
    space = load_space(path)
    study = optuna.create_study(
        directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    valid, stage_counts = [], set()
    for _ in range(30):
        trial = study.ask()
        try:
            cfg = space.sample(trial)
        except ArchError as err:
            assert "(params: " in str(err)  # the caller records this as the pruned reason
            study.tell(trial, state=TrialState.PRUNED)
            continue
        n = len(cfg.stages)
        stage_counts.add(n)
        for name in trial.params:
            m = _NAME.match(name)
            assert m and m["key"] in PARAMS, name
            assert not space.params[name].fixed, name
            if m["stage"]:  # per-stage params only for stages the sample has
                assert PARAMS[m["key"]].per_stage and int(m["stage"]) <= n, name
            else:
                assert not PARAMS[m["key"]].per_stage, name
        valid.append(cfg)
        study.tell(trial, state=TrialState.PRUNED)
    assert len(valid) >= 20
    assert len(stage_counts) > 1  # the stage count is searched, so conditionals were exercised
    size = space.data.img_size
    smallest = min(valid, key=lambda c: cost.estimate(c, size, 10).flops)
    model = build_model(smallest, num_classes=10, img_size=size)
    out = model.train()(torch.randn(2, 3, size, size))  # training mode: instance norm is picky
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_parameter_names_are_readable_and_conditional() -> None:
    space = load_space(PIT)
    params = space.params_of(zoo.get("pit_ti"))
    assert params == {
        "stages": 3,
        "heads": 2,
        "head_dim": 32,
        "s1.depth": 2,
        "s2.head_mult": 2,
        "s2.depth": 6,
        "s3.head_mult": 2,
        "s3.depth": 4,
        "pool": "dwconv",
        "pos": "le",
    }
    study = optuna.create_study(directions=space.directions)
    study.enqueue_trial({**params, "stages": 2})
    trial = study.ask()
    cfg = space.sample(trial)
    assert len(cfg.stages) == 2
    assert "s3.depth" not in trial.params and "s3.head_mult" not in trial.params
    assert [s.dim for s in cfg.stages] == [64, 128]  # width = heads * head_dim
    assert cfg.stem.stride == 8  # patch_size // 2


def test_sample_names_the_params_of_an_invalid_combination() -> None:
    space = load_space(ROOT / "spaces" / "hvit.yaml")
    params = {
        "stages": 4, "stem": "patch", "heads": 2, "head_dim": 32, "head_mix": True,
        "pool": "dwconv", "pos": "none", "head": "avg", "norm_eps": 1e-6,
        **{f"s{i}.depth": 1 for i in range(1, 5)},
        **{f"s{i}.sr": 1 for i in range(1, 4)},
        **{f"s{i}.head_mult": 1 for i in range(2, 5)},
    }  # fmt: skip
    with pytest.raises(ArchError, match=r"head_interaction.*params: .*head_mix=True"):
        space.sample(FixedTrial(params))  # stage 4 is 1x1 at 48 px with no class token


def test_params_of_names_what_the_space_cannot_express() -> None:
    space = load_space(PIT)
    with pytest.raises(SpaceError, match=r"'pit_b'.*patch_size=14 .*arch\.patch_size"):
        space.params_of(zoo.get("pit_b"))
    with pytest.raises(SpaceError, match=r"'rest_lite'.*stem='conv3'"):
        space.params_of(zoo.get("rest_lite"))
    with pytest.raises(SpaceError, match=r"distilled=True"):
        space.params_of(zoo.get("pit_ti_distilled"))


def test_check_budgets_states_the_figures() -> None:
    space = load_space(PIT)
    reason = space.check_budgets(zoo.get("pit_b"))
    assert reason and "GFLOPs > max_gflops 3" in reason and "M params > max_params_m 25" in reason
    assert space.check_budgets(zoo.get("pit_s")) is None


def test_search_budgets_and_export_limits_are_one_rule() -> None:
    from dimsearch.export import Constraints

    assert Constraints is Budgets  # `dimsearch export --max-*` builds the same type
    limits = Budgets(max_gflops=1.0, max_params_m=5.0)
    assert limits.violations({"gflops": 1.5, "params_m": 4.0}) == ["1.500 GFLOPs > max_gflops 1"]
    assert limits.violations({"gflops": None}) == ["no gflops figure for max_gflops 1"]
    assert limits.violations({"latency_ms": 99.0}) == []  # no limit on latency
    assert limits.violations({}) == []  # only the figures given are checked
    with pytest.raises(DimsearchError, match=r"max_gflops must be null or a number > 0, got -1"):
        Budgets(max_gflops=-1)


@pytest.mark.parametrize("kind", ["tpe", "nsga2", "random"])
def test_make_sampler_kinds_and_seed_offset(kind: str, tmp_path: Path) -> None:
    data = _pit_dict()
    data["sampler"] = {"kind": kind, "seed": 3}
    space = _load(tmp_path, data)
    expected = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }[kind]
    assert isinstance(space.make_sampler(), expected)

    def first(offset: int) -> dict[str, Any]:
        study = optuna.create_study(
            directions=space.directions, sampler=space.make_sampler(seed_offset=offset)
        )
        trial = study.ask()
        space.sample(trial)
        return trial.params

    assert first(0) == first(0)
    assert first(0) != first(1)


def test_docs_table_lists_the_whole_vocabulary() -> None:
    text = (ROOT / "docs" / "spaces.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|", text.split("### Vocabulary")[1], flags=re.M)
    assert rows == list(PARAMS)


def test_loading_touches_nothing_but_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pit.yaml").write_text(PIT.read_text())
    load_space("pit.yaml")
    assert [p.name for p in tmp_path.iterdir()] == ["pit.yaml"]


def test_defaults_fill_omitted_sections(tmp_path: Path) -> None:
    data = {"arch": {"stages": 3, "heads": 2, "head_dim": 32, "head_mult": 2, "depth": [2, 6, 4],
                     "pos": "le"}}  # fmt: skip
    space = _load(tmp_path, data, name="tiny")
    assert space.name == "tiny"
    assert space.objectives == ("accuracy", "gflops")
    assert space.sample(FixedTrial({})) == zoo.get("pit_ti").replace(name="")


# -- bad files -------------------------------------------------------------------------------------

_DELETE = object()


def _pit_dict() -> dict[str, Any]:
    return yaml.safe_load(PIT.read_text())


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def _load(tmp_path: Path, data: Any, name: str = "bad") -> SearchSpace:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_space(path)


# (id, dotted key to change, new value, substrings the message must hold besides "bad.yaml")
BAD = [
    ("bool-is-not-int", "arch.heads", True, ["arch.heads", "integer", "True"]),
    ("wrong-type-top", "target_img_size", "224", ["target_img_size", "'224'"]),
    ("wrong-type-section", "search.max_concurrent", 0, ["search.max_concurrent", "in [1, 1024], got 0"]),
    ("unknown-top-key", "epochs", 3, ["epochs", "known keys", "'early_stopping'"]),
    ("unknown-arch-key", "arch.depht", 3, ["arch.depht", "'depth'"]),
    ("unknown-nested-key", "early_stopping.patience", 2, ["early_stopping.patience"]),
    ("unknown-decl-key", "arch.heads", {"choices": [1], "default": 1}, ["arch.heads.default"]),
    ("low-gt-high", "arch.head_dim", {"low": 64, "high": 32}, ["arch.head_dim.low", "low=64"]),
    ("low-gt-high-per-stage", "arch.depth.1", {"low": 9, "high": 8}, ["arch.depth[1].low"]),
    ("float-bound-on-int", "arch.heads", {"low": 1, "high": 2.5}, ["arch.heads.high", "2.5"]),
    ("empty-choices", "arch.pool", {"choices": []}, ["arch.pool.choices", "empty"]),
    ("unknown-pool", "arch.pool", {"choices": ["dwconv", "strided"]},
     ["arch.pool.choices[1]", "'strided'", "'avg'", "'conv'"]),
    ("range-on-choice", "arch.pool", {"low": 1, "high": 2}, ["arch.pool", "constant"]),
    ("per-stage-length", "arch.depth", [2, 6], ["arch.depth", "s1..s4"]),
    ("list-on-global", "arch.pool", ["dwconv", "avg"], ["arch.pool", "{choices: ["]),
    ("missing-required", "arch.head_dim", _DELETE, ["arch.head_dim", "missing"]),
    ("seed-not-in-zoo", "seeds", ["pit_ti", "pit_q"], ["seeds[1]", "'pit_q'", "pit_xs"]),
    ("seed-not-expressible", "arch.head_dim", {"choices": [32, 64]},
     ["seeds[1]", "'pit_xs'", "head_dim=48", "arch.head_dim"]),
    ("budgets-exclude-every-seed", "budgets", {"max_gflops": 0.5},
     ["budgets", "pit_ti: 0.702 GFLOPs > max_gflops 0.5", "pit_xs: ", "pit_s: "]),
    ("objective-unknown", "objectives", ["accuracy", "flops"], ["objectives[1]", "'flops'"]),
    ("objective-no-accuracy", "objectives", ["gflops"], ["objectives", "'accuracy'"]),
    ("resources-negative", "resources.cpus", -1, ["resources.cpus", "in (0, 1024], got -1"]),
    ("gpus-fraction-above-one", "resources.gpus", 1.5, ["resources.gpus"]),
    ("sampler-key-of-other-kind", "sampler.kind", "random", ["sampler.n_startup_trials"]),
    ("sampler-unknown-kind", "sampler.kind", "cmaes", ["sampler.kind", "'nsga2'"]),
    ("grace-beyond-epochs", "early_stopping.grace_period", 9,
     ["early_stopping.grace_period", "train.epochs"]),
    ("data-error", "data.img_size", 4, ["data.img_size"]),
    ("train-error", "train.epochs", 0, ["train.epochs"]),
    ("bad-name", "name", "PiT Space", ["name", "1 to 64 characters of [a-z0-9_-]"]),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "needles"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_space_names_file_and_key(tmp_path: Path, key: str, value: Any, needles: list[str]):
    with pytest.raises(SpaceError) as info:
        _load(tmp_path, _set(_pit_dict(), key, value))
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.yaml") + ": ")
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("arch: {stages: [1, 2\n", ["not valid YAML", "line 2"]),
        ("name: pit\nname: again\narch: {}\n", ["duplicate key 'name'", "line 2"]),
        ("- a\n- b\n", ["must be a YAML mapping", "got list"]),
        ("", ["is empty"]),
    ],
    ids=["syntax", "duplicate-key", "not-a-mapping", "empty"],
)
def test_unreadable_space_files(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_missing_file() -> None:
    with pytest.raises(SpaceError, match=r"nope\.yaml: no such space file"):
        load_space("spaces/nope.yaml")


def test_name_defaults_to_a_valid_stem_only(tmp_path: Path) -> None:
    data = _set(_pit_dict(), "name", _DELETE)
    assert _load(tmp_path, data, name="my-space_2").name == "my-space_2"
    with pytest.raises(SpaceError, match=r"Bad Name\.yaml: name is missing and the file stem"):
        _load(tmp_path, data, name="Bad Name")


def test_the_recorded_sample_space_is_spaces_pit_yaml_on_other_proxy_data() -> None:
    """benchmarks/pit_fmnist32.yaml samples the pit space itself: only the proxy differs."""
    root = Path(__file__).resolve().parents[1]
    pit = load_space(root / "spaces" / "pit.yaml")
    sample = load_space(root / "benchmarks" / "pit_fmnist32.yaml")
    for key in ("arch", "objectives", "budgets", "seeds", "target_img_size", "num_classes"):
        assert sample.to_dict()[key] == pit.to_dict()[key], key
    assert sample.data.kind == "idx" and sample.train.epochs >= 8
