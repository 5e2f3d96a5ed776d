"""The sample table: round trips, the format's errors, export from a real study (no training)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sample_factory import arch, record, table
from study_factory import EPOCHS, make_study
from typer.testing import CliRunner

from dimsearch.cli import app
from dimsearch.search.sample import (
    TRAIN_SEED_ATTR,
    VERSION,
    SampleError,
    SampleTable,
    arch_key,
)
from dimsearch.search.study import Attr


@pytest.fixture
def small() -> SampleTable:
    return table(
        [
            record(0, arch(2, name="pit_ti"), [40.0, 55.5, 60.25], seed="pit_ti"),
            record(1, arch(3, name="trial1"), [42.0, 50.0, 58.05], latency_ms=None),
            # a repeat of trial 1's architecture with another training seed
            record(7, arch(3, name="trial7"), [41.1, 51.0, 59.0], train_seed=1),
        ]
    )


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s.json", "s.json.gz"])
def test_save_load_round_trip_is_equal(small: SampleTable, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    small.save(path)
    assert SampleTable.load(path) == small
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        small.save(tmp_path / "again.json.gz")  # the same table, the same bytes
        assert (tmp_path / "again.json.gz").read_bytes() == path.read_bytes()


def test_repeats_share_one_stored_architecture(small: SampleTable, tmp_path: Path) -> None:
    small.save(tmp_path / "s.json")
    d = json.loads((tmp_path / "s.json").read_text())
    assert d["format"] == "dimsearch-sample" and d["version"] == VERSION
    assert len(d["archs"]) == 2 and all("name" not in a for a in d["archs"])
    assert [r["arch"] for r in d["records"]] == [0, 1, 1]
    groups = small.groups()
    assert [[r.number for r in g] for g in groups] == [[0], [1, 7]]
    assert arch_key(arch(3, name="x")) == arch_key(arch(3, name="y")) != arch_key(arch(2))


def test_values_are_stored_at_the_precision_measured() -> None:
    r = record(0, arch(), [71.23456, 80.0049], epoch_seconds=(4.3361, 1.0))
    r = dataclasses.replace(r, gflops=0.702020096, latency_ms=51.13110950)
    assert r.curve == (71.23, 80.0) and r.epoch_seconds == (4.34, 1.0)
    assert r.gflops == 0.70202 and r.latency_ms == 51.131 and r.accuracy == 80.0


def test_two_hundred_records_stay_well_under_two_megabytes(tmp_path: Path) -> None:
    rng = random.Random(0)
    recs = [
        record(
            i,
            arch(1 + i % 4, 1 + i // 4 % 4, name=f"trial{i}") | {"drop_path_rate": i / 1000},
            [rng.uniform(30, 90) for _ in range(8)],
            epoch_seconds=tuple(rng.uniform(2, 20) for _ in range(8)),
            epoch_cpu_seconds=tuple(rng.uniform(2, 20) for _ in range(8)),
            gflops=rng.uniform(0.1, 3),
            latency_ms=rng.uniform(5, 100),
        )
        for i in range(200)
    ]
    t = table(recs, epochs=8)
    size = t.save(tmp_path / "big.json")
    assert len(t.groups()) == 200
    assert size < 400_000, size  # ~1.2 KB per record with its own architecture
    assert t.save(tmp_path / "big.json.gz") < size / 4
    assert SampleTable.load(tmp_path / "big.json.gz") == t


# -- errors: one line, naming the file and the key ---------------------------------------------


def _broken(small: SampleTable, tmp_path: Path, edit) -> str:
    path = tmp_path / "bad.json"
    small.save(path)
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    with pytest.raises(SampleError) as err:
        SampleTable.load(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_a_newer_version_is_refused_by_name(small: SampleTable, tmp_path: Path) -> None:
    msg = _broken(small, tmp_path, lambda d: d.update(version=VERSION + 1))
    assert f"`version` is {VERSION + 1}" in msg and f"version {VERSION} only" in msg
    msg = _broken(small, tmp_path, lambda d: d.update(format="something-else"))
    assert "`format` must be 'dimsearch-sample'" in msg


def test_a_missing_or_ill_typed_key_is_named(small: SampleTable, tmp_path: Path) -> None:
    msg = _broken(small, tmp_path, lambda d: d["records"][1].pop("curve"))
    assert msg.endswith("`records[1].curve` is missing")
    msg = _broken(small, tmp_path, lambda d: d.pop("epochs"))
    assert msg.endswith("`epochs` is missing")
    msg = _broken(small, tmp_path, lambda d: d["records"][2].update(curve=[71.2]))
    assert msg.endswith("`records[2].curve` must be 3 numbers, got [71.2]")
    msg = _broken(small, tmp_path, lambda d: d["records"][0].update(arch=5))
    assert "`records[0].arch` must be an index into archs, got 5" in msg
    msg = _broken(small, tmp_path, lambda d: d["records"][0].update(train_seed="0"))
    assert '`records[0].train_seed` must be an integer, got "0"' in msg


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(SampleError, match=r"x\.json: not JSON \(line 1"):
        SampleTable.load(tmp_path / "x.json")
    with pytest.raises(SampleError, match="no.json: cannot read it"):
        SampleTable.load(tmp_path / "no.json")
    with pytest.raises(SampleError, match=r"ends in \.json or \.json\.gz"):
        table([]).save(tmp_path / "t.txt")


# -- from a real study, through the CLI --------------------------------------------------------


def _add_repeat(study: optuna.Study, of: optuna.trial.FrozenTrial, shift: float) -> None:
    """``of`` retrained with training seed 1: same architecture, another curve."""
    attrs = dict(of.user_attrs)
    attrs[TRAIN_SEED_ATTR] = 1
    attrs[Attr.CURVE] = [v + shift for v in attrs[Attr.CURVE]]
    attrs[Attr.EPOCH_SECONDS] = [1.234] * EPOCHS
    attrs[Attr.ARCH] = {**attrs[Attr.ARCH], "name": "repeat"}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[attrs[Attr.CURVE][-1], *of.values[1:]],
            params=of.params,
            distributions=of.distributions,
            user_attrs=attrs,
        )
    )


def test_sample_export_of_a_real_study(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "pit.db"
    study = make_study(db, samples=14)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    seed_trial = next(t for t in complete if t.user_attrs.get(Attr.SEED) == "pit_xs")
    _add_repeat(study, seed_trial, -0.5)
    study.add_trial(  # COMPLETE but without its curve: left out, by reason
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[50.0, 1.0, 1.0],
            user_attrs={**complete[-1].user_attrs, Attr.CURVE: [50.0]},
        )
    )
    out = tmp_path / "bench" / "pit.json"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["sample-export", str(db), "-o", str(out)])
    assert res.exit_code == 0, res.output
    n = len(complete) + 1
    assert f"{n} records of {n - 1} architectures, {EPOCHS} epochs" in res.output
    assert "left out:" in res.output and "1 curve shorter than the budget" in res.output

    t = SampleTable.load(out)
    assert t.study == "pit" and t.epochs == EPOCHS and len(t.records) == n
    assert t.objectives == ("accuracy", "gflops", "latency_ms")
    assert t.space == study.user_attrs[Attr.SPACE]
    assert t.made_by["command"] == f"dimsearch sample-export {db} -o {out}"
    assert {"dimsearch", "python", "optuna"} <= set(t.made_by["versions"])
    states = {s: sum(x.state == s for x in study.trials) for s in TrialState}
    assert t.excluded["pruned"] == states[TrialState.PRUNED]
    assert t.excluded["fail"] == states[TrialState.FAIL]
    assert {r.seed for r in t.records} == {None, "pit_ti", "pit_xs", "pit_s"}
    by_number = {r.number: r for r in t.records}
    first = by_number[seed_trial.number]
    assert first.train_seed == 0 and first.epoch_seconds == ()  # the factory records none
    assert first.curve == tuple(round(v, 2) for v in seed_trial.user_attrs[Attr.CURVE])
    assert first.optuna_params == seed_trial.params
    assert first.params == seed_trial.user_attrs[Attr.PARAMS]
    repeat = t.records[-1]
    assert repeat.train_seed == 1 and repeat.epoch_seconds == (1.23,) * EPOCHS
    assert [len(g) for g in t.groups()].count(2) == 1
    assert next(g for g in t.groups() if len(g) == 2) == (first, repeat)


def test_sample_export_errors_exit_2(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runner = CliRunner(env={"COLUMNS": "200"})
    res = runner.invoke(app, ["sample-export", str(tmp_path / "none.db"), "-o", "x.json"])
    assert res.exit_code == 2 and "no such study file" in res.output
    db = tmp_path / "pit.db"
    optuna.create_study(study_name="pit", storage=f"sqlite:///{db}")
    res = runner.invoke(app, ["sample-export", str(db), "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "no COMPLETE trial" in res.output
    assert not (tmp_path / "x.json").exists()


def test_the_recorded_sample_in_the_repo_is_the_one_the_issue_asks_for() -> None:
    """benchmarks/pit_fmnist32.json, which `bench search`, `fidelity` and `edf` read without
    training: >= 150 architectures of spaces/pit.yaml with its seeds, >= 8 epochs, some with 3
    training seeds, in a file under 2 MB that loads through the documented format."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pit_fmnist32.json"
    assert path.stat().st_size < 2 * 2**20
    t = SampleTable.load(path)
    groups = t.groups()
    assert len(groups) >= 150 and t.epochs >= 8
    assert {"pit_ti", "pit_xs", "pit_s"} <= {r.seed for r in t.records}
    assert sum(len(g) == 3 for g in groups) >= 3
    assert all(len(r.curve) == t.epochs and r.epoch_seconds for r in t.records)
