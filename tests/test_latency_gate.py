"""`max_latency_ms` before building: the latency gate of a search (`dimsearch.search.gate`).

Real parts throughout: part tables calibrated on this CPU (tiny shapes, few passes), a real
sqlite study, the real searcher and recorder. Only the ``over_budget`` result a trial reports
at its start is written here, as the trainable writes it.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from dimsearch.cli import app
from dimsearch.cost import calibrate, open_table
from dimsearch.cost._latency import local_device_names
from dimsearch.errors import SpaceError
from dimsearch.search import load_space
from dimsearch.search.bridge import OpenTrial, OptunaSearcher, StudyRecorder
from dimsearch.search.budgets import Budgets
from dimsearch.search.gate import (
    DRIFT_MIN_TRIALS,
    gate_plan,
    latency_drift,
    open_gate,
    table_settings,
)
from dimsearch.search.runner import _payload_builder
from dimsearch.search.study import Attr

SPACE = """
name: gated
target_img_size: 32
num_classes: 10
arch:
  stages: 2
  stem: patch
  patch_size: 4
  heads: {choices: [1, 4]}
  head_dim: {choices: [8, 32]}
  head_mult: 1
  depth: {choices: [1, 4]}
  sr: 1
  pool: avg
  pos: le
  pos_at: stem
  head: token
objectives: [accuracy, gflops, latency_ms]
seeds: []
latency: {device: cpu, batch_size: 1, repeats: 2, warmup: 0, threads: 1%(latency)s}
data: {kind: synthetic, img_size: 16, num_classes: 4, train_per_class: 4, val_per_class: 2}
train: {epochs: 2, batch_size: 4}
early_stopping: {kind: none}
resources: {cpus: 1, gpus: 0}
%(budgets)s
"""

SMALL = {"heads": 1, "head_dim": 8, "s1.depth": 1, "s2.depth": 1}
BIG = {"heads": 4, "head_dim": 32, "s1.depth": 4, "s2.depth": 4}


pytestmark = pytest.mark.usefixtures("private_latency")


def _space(tmp_path: Path, budgets: str = "", latency: str = ""):
    path = tmp_path / "gated.yaml"
    path.write_text(textwrap.dedent(SPACE % {"budgets": budgets, "latency": latency}))
    return load_space(path)


def _arch(space, params: dict):
    return space.sample(optuna.trial.FixedTrial(params))


def _calibrated(space, archs, device_name: str | None = None):
    """The space's table (of this CPU, or filed under ``device_name``), holding ``archs``."""
    table = open_table(table_settings(space), device_name=device_name)
    calibrate(
        table,
        archs,
        img_size=space.target_img_size,
        num_classes=space.num_classes,
        fit_models=archs,
        space=space.name,
    )
    return table


def _study(tmp_path: Path, space) -> optuna.Study:
    return optuna.create_study(
        study_name=space.name,
        storage=f"sqlite:///{tmp_path / 'gated.db'}",
        directions=space.directions,
    )


def test_a_sample_predicted_over_the_budget_is_rejected_before_it_is_built(tmp_path: Path):
    space = _space(tmp_path)
    small, big = _arch(space, SMALL), _arch(space, BIG)
    table = _calibrated(space, [small, big])
    from dimsearch.cost import predict_latency

    p_small, p_big = (
        predict_latency(c, table, space.target_img_size, space.num_classes, space=space.name)
        for c in (small, big)
    )
    assert p_big > 2 * p_small  # 16x the width, 4x the depth
    limit = (p_small + p_big) / 2
    space = dataclasses.replace(space, budgets=Budgets(max_latency_ms=limit))
    local = local_device_names("cpu")
    gate = open_gate(space, local, local)
    assert gate.table is not None and "predicted before building" in gate.note

    study = _study(tmp_path, space)
    study.enqueue_trial(BIG)
    study.enqueue_trial(SMALL)
    events: list[tuple[str, str]] = []
    open_trials: dict[str, OpenTrial] = {}
    searcher = OptunaSearcher(
        study,
        space,
        _payload_builder(space),
        open_trials,
        lambda kind, text: events.append((kind, text)),
        gate,
    )
    payload = searcher.suggest("ray-1")

    rejected, taken = study.get_trials(deepcopy=False)
    assert rejected.state == TrialState.PRUNED
    reason = rejected.user_attrs[Attr.REASON]
    assert reason.startswith("over budget before building: predicted latency")
    assert f"{p_big:.2f} ms > max_latency_ms {limit:g}" in reason
    assert rejected.user_attrs[Attr.PREDICTED_LATENCY_MS] == pytest.approx(p_big)
    # never handed to Ray, so never built nor measured
    assert Attr.LATENCY_MS not in rejected.user_attrs and Attr.LATENCY not in rejected.user_attrs
    assert [e.trial.number for e in open_trials.values()] == [taken.number]

    assert taken.state == TrialState.RUNNING
    assert taken.user_attrs[Attr.PREDICTED_LATENCY_MS] == pytest.approx(p_small)
    assert open_trials["ray-1"].predicted_ms == pytest.approx(p_small)
    assert payload["arch"]["stages"][0]["dim"] == 8
    assert payload["max_latency_ms"] == limit  # the measurement at trial start still applies
    assert any(k == "start" and f"{p_small:.2f} ms predicted" in t for k, t in events)


def _recorder(tmp_path: Path, space, predicted: float | None):
    study = _study(tmp_path, space)
    trial = study.ask()
    events: list[tuple[str, str]] = []
    entry = OpenTrial(trial, None, 0.01, 1000, predicted_ms=predicted)
    recorder = StudyRecorder(study, space, {}, lambda k, t: events.append((k, t)))
    return study, entry, recorder, events


def test_a_sample_predicted_under_but_measured_over_is_pruned_with_both_figures(tmp_path):
    space = _space(tmp_path, budgets="budgets: {max_latency_ms: 2.0}")
    study, entry, recorder, events = _recorder(tmp_path, space, predicted=1.25)
    # what the trainable reports when its measurement is over the budget
    over = "latency 3.00 ms > max_latency_ms 2 (a cpu)"
    entry.results.append({"epoch": 0, "accuracy": 0.0, "over_budget": over, "latency_ms": 3.0})
    recorder._finish(entry)
    t = study.trials[0]
    assert t.state == TrialState.PRUNED
    assert t.user_attrs[Attr.REASON] == (f"over budget after measuring: {over}; predicted 1.25 ms")
    assert events == [("pruned", f"trial 0 pruned: {over}; predicted 1.25 ms")]


def test_the_live_view_puts_predicted_beside_measured(tmp_path: Path):
    space = _space(tmp_path)
    study, entry, recorder, events = _recorder(tmp_path, space, predicted=1.25)
    for epoch in (1, 2):
        entry.results.append({"epoch": epoch, "accuracy": 50.0 + epoch, "latency_ms": 1.5})
    recorder._finish(entry)
    assert study.trials[0].state == TrialState.COMPLETE
    assert events == [
        ("complete", "trial 0 complete: 52.00%; latency 1.50 ms measured, 1.25 ms predicted")
    ]


# --- when the table as a whole disagrees with the measurements --------------------------------


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([(1.5, 1.0)] * 4, None),  # too few trials to judge the table
        ([(1.5, 1.0)] * 5, "1.50x"),  # all 50% slow: the table reads low
        ([(0.5, 1.0)] * 5, "0.50x"),  # and the other way
        ([(1.19, 1.0)] * 9, None),  # within the 20% the rule allows
        ([(1.0, 1.0)] * 3 + [(30.0, 1.0)] * 2, None),  # two outliers do not move the median
        ([(1.0, 1.0)] * 2 + [(2.0, 1.0)] * 4, "2.00x"),  # an even count: the middle two
        ([(1.0, 1.0)] * 3 + [(1.3, 1.0)] + [(1.5, 1.0)] * 2, None),  # middle two: 1.15x
        ([(2.0, 1.0)] * 4 + [(0.0, 1.0), (2.0, 0.0)], None),  # zeros are not figures
    ],
)
def test_latency_drift_judges_the_median_ratio_of_enough_trials(pairs, says):
    note = latency_drift(pairs, "spaces/x.yaml")
    if says is None:
        assert note is None
    else:
        assert note is not None and f"a median {says} the prediction over" in note
        assert "`dimsearch latency calibrate spaces/x.yaml --refresh`" in note


def test_the_live_view_says_once_when_measurements_drift_from_the_table(
    tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    space = _space(tmp_path)
    study = _study(tmp_path, space)
    events: list[tuple[str, str]] = []
    recorder = StudyRecorder(study, space, {}, lambda k, t: events.append((k, t)))
    for i in range(DRIFT_MIN_TRIALS + 2):
        trial = study.ask()
        trial.set_user_attr(Attr.PREDICTED_LATENCY_MS, 1.0)  # as the searcher stores it
        entry = OpenTrial(trial, None, 0.01, 1000, predicted_ms=1.0)
        entry.results.append({"epoch": 1, "accuracy": 40.0 + i, "latency_ms": 1.5})
        entry.results.append({"epoch": 2, "accuracy": 50.0 + i, "latency_ms": 1.5})
        recorder._finish(entry)
        warned = [t for k, t in events if k == "warn"]
        assert len(warned) == (1 if i + 1 >= DRIFT_MIN_TRIALS else 0), (i, warned)
    assert "a median 1.50x the prediction over 5 trials" in warned[0]
    # and `show` says the same of the stored study, over all of its trials
    res = CliRunner().invoke(app, ["show", str(tmp_path / "gated.db")], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "a median 1.50x the prediction over 7 trials" in " ".join(res.output.split())
    rep = CliRunner().invoke(app, ["report", str(tmp_path / "gated.db"), "-o", "rep"])
    assert rep.exit_code == 0, rep.output
    assert "a median 1.50x the prediction over 7 trials" in (Path("rep") / "index.html").read_text()


def test_measurements_that_agree_with_the_table_raise_no_note(tmp_path: Path):
    space = _space(tmp_path)
    study = _study(tmp_path, space)
    events: list[tuple[str, str]] = []
    recorder = StudyRecorder(study, space, {}, lambda k, t: events.append((k, t)))
    for i, measured in enumerate((0.95, 1.05, 1.1, 0.9, 1.0, 1.02)):
        trial = study.ask()
        trial.set_user_attr(Attr.PREDICTED_LATENCY_MS, 1.0)
        entry = OpenTrial(trial, None, 0.01, 1000, predicted_ms=1.0)
        entry.results.append({"epoch": 2, "accuracy": 50.0 + i, "latency_ms": measured})
        recorder._finish(entry)
    assert not [t for k, t in events if k == "warn"]
    res = CliRunner().invoke(app, ["show", str(tmp_path / "gated.db")], env={"COLUMNS": "400"})
    assert res.exit_code == 0 and "prediction over" not in res.output


def _show_study(tmp_path: Path, predicted: bool) -> Path:
    db = tmp_path / "shown.db"
    study = optuna.create_study(
        study_name="shown", storage=f"sqlite:///{db}", directions=["maximize", "minimize"]
    )
    study.set_user_attr(Attr.OBJECTIVES, ["accuracy", "latency_ms"])
    for acc, measured, pred in ((70.0, 4.0, 3.75), (60.0, 2.0, None)):
        attrs = {Attr.LATENCY_MS: measured, Attr.GFLOPS: 0.5, Attr.PARAMS: 1_000_000}
        if predicted and pred is not None:
            attrs[Attr.PREDICTED_LATENCY_MS] = pred
        study.add_trial(optuna.trial.create_trial(values=[acc, measured], user_attrs=attrs))
    return db


@pytest.mark.parametrize("all_trials", [True, False])
def test_show_lists_the_predicted_latency_beside_the_measured(tmp_path: Path, all_trials):
    db = _show_study(tmp_path, predicted=True)
    args = ["show", str(db), *(["--all"] if all_trials else [])]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if "top-1 %" in line)
    assert header.index("ms") < header.index("pred. ms") < header.index("M params")
    row = next(line for line in res.output.splitlines() if "70.00" in line)
    assert "4.00" in row and "3.75" in row
    rows = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert [r["predicted_latency_ms"] for r in rows] == [3.75, None]


def test_show_of_a_study_without_predictions_has_no_such_column(tmp_path: Path):
    db = _show_study(tmp_path, predicted=False)
    res = CliRunner().invoke(app, ["show", str(db), "--all"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "pred. ms" not in res.output


# --- which table ------------------------------------------------------------------------------


def test_a_run_with_a_latency_budget_calibrates_once_and_says_how_long(tmp_path: Path):
    space = _space(tmp_path, budgets="budgets: {max_latency_ms: 50}")
    assert gate_plan(space) == "calibrate"
    local = local_device_names("cpu")
    said: list[str] = []
    gate = open_gate(space, local, local, say=said.append, samples=4, fit_models=2)
    assert gate.table is not None and gate.table.path.is_file()
    assert any(
        line.startswith("calibrated ") and " s, once for this device" in line for line in said
    )
    assert any(m["space"] == "gated" for m in gate.table.models.values())
    assert gate.predict(_arch(space, SMALL)) is not None or gate.lacking == 1
    said.clear()
    again = open_gate(space, local, local, say=said.append, samples=4, fit_models=2)
    assert said == [] and again.table.parts == gate.table.parts  # cached: nothing timed


def test_without_a_budget_or_with_predict_off_nothing_is_calibrated(tmp_path: Path):
    local = local_device_names("cpu")
    space = _space(tmp_path)
    assert gate_plan(space) == "cached"
    gate = open_gate(space, local, local, say=pytest.fail)
    assert gate.table is None and "no latency table for" in gate.note
    assert "measured only" in gate.note and "dimsearch latency calibrate" in gate.note
    off = _space(tmp_path, budgets="budgets: {max_latency_ms: 5}", latency=", predict: false")
    assert gate_plan(off) == "off"
    gate = open_gate(off, local, local, say=pytest.fail)
    assert gate.table is None and "predict is off" in gate.note


def test_predictions_use_the_table_of_the_trials_device_not_the_drivers(tmp_path: Path):
    space = _space(tmp_path, budgets="budgets: {max_latency_ms: 50}")
    local = local_device_names("cpu")
    small = _arch(space, SMALL)
    # the cluster's nodes have another CPU; its table was calibrated there and copied here
    remote = _calibrated(space, [small], device_name="Node CPU 9000")
    gate = open_gate(space, ["Node CPU 9000"] * 2, local, say=pytest.fail)
    assert gate.table is not None and gate.table.device_name == "Node CPU 9000"
    assert gate.table.path == remote.path
    assert gate.predict(small) == pytest.approx(
        remote.correction("gated")(remote.parts_ms(small, 32, 10))
    )
    assert not open_table(table_settings(space)).parts  # the driver's own: never calibrated

    # another device without a table: the driver cannot calibrate it, so measured only
    gate = open_gate(space, ["Node GPU-less CPU"], local, say=pytest.fail)
    assert gate.table is None and "on a machine with that device" in gate.note
    # several kinds of device: no one table is the trials', so measured only
    gate = open_gate(space, ["Node CPU 9000", *local], local, say=pytest.fail)
    assert gate.table is None and "2 kinds of cpu" in gate.note and "measured only" in gate.note


def test_a_space_latency_section_is_checked_with_its_file_named(tmp_path: Path):
    path = tmp_path / "gated.yaml"
    text = textwrap.dedent(SPACE % {"budgets": "", "latency": ""})
    path.write_text(text.replace("threads: 1", "threads: 2, clock: cpu"))
    with pytest.raises(SpaceError, match=r"gated\.yaml: latency\.clock 'cpu' .* threads 1"):
        load_space(path)
    path.write_text(text.replace("device: cpu", "device: 'cuda:0'"))
    with pytest.raises(SpaceError, match=r"gated\.yaml: latency\.device must be one of"):
        load_space(path)
