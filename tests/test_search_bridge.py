"""The Ray Tune <-> Optuna bridge: every trial ends in the state that matches what happened.

Real Ray (a local cluster), real Optuna storage (sqlite); the trials' behaviour is scripted
(see scripted_trials.py) so each outcome can be checked trial by trial.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import scripted_trials
from optuna.trial import TrialState
from procs import stop
from rich.console import Console

from dimsearch.search import load_space
from dimsearch.search.runner import run
from dimsearch.search.study import Attr, resolve_storage

SPACE = """
name: bridge
target_img_size: 64
num_classes: 10
arch:
  stages: 3
  stem: patch
  patch_size: 16
  heads: {choices: [1, 2]}
  head_dim: {choices: [8, 32]}
  head_mult: 2
  depth:
    - {choices: %(depth1)s}
    - {choices: [1, 6]}
    - {choices: [1, 4]}
  sr: 1
  pool: dwconv
  pos: le
  pos_at: stem
  head: token
budgets: %(budgets)s
seeds: %(seeds)s
objectives: [accuracy, gflops, latency_ms]
latency: {device: cpu, batch_size: 1, repeats: 1, warmup: 0, predict: %(predict)s}
data: {kind: synthetic, img_size: 16, num_classes: 4, train_per_class: 8, val_per_class: 4}
train: {epochs: 4, batch_size: 8}
early_stopping: %(early)s
sampler: {kind: tpe, seed: 3, n_startup_trials: 20}
search: {trials: %(trials)d, max_concurrent: 2, repeats: %(repeats)d%(search)s}
resources: {cpus: 1, gpus: 0}
"""


@pytest.fixture(scope="module")
def local_ray():
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(scripted_trials)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()


def _space(
    tmp_path: Path,
    trials: int,
    early: str = "asha",
    repeats: int = 1,
    depth1: str = "[1, 2, 3, 4, 5, 6]",
    seeds: str = "[pit_ti]",
    budgets: str = "{max_gflops: 5.0}",
    search: str = "",
    predict: str = "true",
):
    """The bridge space; ``depth1`` picks the scripted behaviours (`scripted_trials.BEHAVIOUR`)
    its samples can have, ``search`` adds keys to the ``search:`` section."""
    path = tmp_path / "bridge.yaml"
    fields = {
        "trials": trials,
        "early": "{kind: none}"
        if early == "none"
        else f"{{kind: {early}, grace_period: 1, reduction_factor: 2}}",
        "repeats": repeats,
        "depth1": depth1,
        "seeds": seeds,
        "predict": predict,
        "budgets": budgets,
        "search": search,
    }
    path.write_text(textwrap.dedent(SPACE % fields))
    return load_space(path)


def _run(
    tmp_path: Path,
    trials: int,
    monkeypatch,
    storage: str | None = None,
    trainable=scripted_trials.scripted,
    **space: object,
) -> tuple[optuna.Study, object]:
    monkeypatch.setenv("DIMSEARCH_RAY_DIR", str(tmp_path / "ray"))
    storage = storage or f"sqlite:///{tmp_path / 'bridge.db'}"
    with open(tmp_path / "log.txt", "a") as log:
        summary = run(
            _space(tmp_path, trials, **space),
            storage=storage,
            trials=trials,
            console=Console(file=log, width=200),
            trainable=trainable,
            shutdown_ray=False,
        )
    return optuna.load_study(
        study_name="bridge", storage=resolve_storage(storage, "bridge")
    ), summary


def _trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that went to Ray (not rejected before training)."""
    return [t for t in study.trials if Attr.RAY_TRIAL in t.user_attrs]


def test_every_outcome_is_recorded_as_what_happened(tmp_path, monkeypatch, local_ray) -> None:
    study, summary = _run(tmp_path, 14, monkeypatch)
    assert all(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in study.trials
    )
    seen = set()
    for t in _trained(study):
        kind = scripted_trials.behaviour(t.user_attrs[Attr.ARCH])
        seen.add(kind)
        curve = t.user_attrs.get(Attr.CURVE, [])
        if kind == "good":
            if t.state == TrialState.COMPLETE:
                # only a full proxy budget is COMPLETE, with the final epoch's accuracy
                assert len(curve) == scripted_trials.EPOCHS == t.user_attrs[Attr.EPOCHS]
                assert t.values[0] == curve[-1]
                assert t.values[2] == 1.5  # latency from the report
            else:
                # stopped by ASHA: PRUNED, never COMPLETE, and the result that triggered the
                # stop is kept, so the curve ends on an ASHA milestone (epoch 1 or 2)
                assert t.state == TrialState.PRUNED
                assert len(curve) in (1, 2)
                assert "stopped early by the scheduler" in t.user_attrs[Attr.REASON]
        else:
            assert t.state == TrialState.FAIL, (kind, t.state)
            reason = t.user_attrs[Attr.REASON]
            expected = {
                "raise": "boom in epoch 1",
                "nan": "non-finite accuracy",
                "oom": "OutOfMemoryError",
                "die": "",
            }[kind]
            assert expected in reason
            if kind == "die":
                assert any(w in reason.lower() for w in ("died", "exit", "worker", "actor")), reason
            if kind == "raise":
                assert "RuntimeError" in t.user_attrs[Attr.ERROR]
    assert seen == {"good", "raise", "nan", "die", "oom"}  # fixed by the sampler seed
    assert any(
        t.state == TrialState.PRUNED and Attr.RAY_TRIAL in t.user_attrs for t in study.trials
    )
    assert summary.counts["complete"] >= 1


def test_rerun_resumes_without_duplicates(tmp_path, monkeypatch, local_ray) -> None:
    first, _ = _run(tmp_path, 3, monkeypatch)
    before = {t.number: (t.state, t.values, t.params) for t in first.trials}
    assert [t.user_attrs.get(Attr.SEED) for t in first.trials].count("pit_ti") == 1

    second, summary = _run(tmp_path, 3, monkeypatch)
    assert summary.seeds_enqueued == []  # the seed is not enqueued twice
    assert [t.user_attrs.get(Attr.SEED) for t in second.trials].count("pit_ti") == 1
    after = {t.number: (t.state, t.values, t.params) for t in second.trials}
    assert all(after[n] == v for n, v in before.items())  # nothing recorded was lost or changed
    new = [t for t in second.trials if t.number not in before and Attr.RAY_TRIAL in t.user_attrs]
    assert len(new) == 3
    assert not [t for t in second.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_orphaned_running_trials_fail_with_a_reason_on_rerun(
    tmp_path, monkeypatch, local_ray
) -> None:
    storage = f"sqlite:///{tmp_path / 'bridge.db'}"
    study = optuna.create_study(
        study_name="bridge", storage=storage, directions=["maximize", "minimize", "minimize"]
    )
    orphan = study.ask()  # what a driver killed mid-trial leaves behind
    study2, summary = _run(tmp_path, 1, monkeypatch)
    assert summary.recovered == [orphan.number]
    t = study2.trials[orphan.number]
    assert t.state == TrialState.FAIL
    assert "left RUNNING by a driver that stopped" in t.user_attrs[Attr.REASON]
    assert not [t for t in study2.trials if t.state == TrialState.RUNNING]


def test_every_node_that_can_take_a_trial_names_its_latency_device(local_ray) -> None:
    """On a cluster the driver's device need not be the trials': each node is asked, by a
    task pinned to it, so the latency gate opens the table of the device trials measure on."""
    from dimsearch.cost._latency import local_device_names
    from dimsearch.search.runner import node_device_names
    from dimsearch.search.settings import Resources

    assert node_device_names("cpu", Resources(cpus=1)) == local_device_names("cpu")
    assert node_device_names("cpu", Resources(cpus=64)) == []  # no node can take such a trial


def test_trainable_ray_pickles_is_a_plain_module_level_function() -> None:
    import pickle

    from dimsearch.search import trainable

    assert pickle.loads(pickle.dumps(trainable.run_trial)) is trainable.run_trial


def test_repeats_retrain_the_front_and_the_seeds_and_a_rerun_adds_none(
    tmp_path, monkeypatch, local_ray
) -> None:
    from dimsearch.search.study import front_trials, repeat_stats, study_rows

    study, _ = _run(tmp_path, 4, monkeypatch, early="moasha", repeats=2)
    repeats = [t for t in study.trials if Attr.REPEAT_OF in t.user_attrs]
    originals = {t.user_attrs[Attr.REPEAT_OF] for t in repeats}
    front = {t.number for t in front_trials(study)}
    seed = next(t.number for t in study.trials if t.user_attrs.get(Attr.SEED) == "pit_ti")
    assert front and front | {seed} <= originals
    for t in repeats:  # the same architecture, the next training seed, trained in full
        original = study.trials[t.user_attrs[Attr.REPEAT_OF]]
        assert t.state == TrialState.COMPLETE and t.params == original.params
        assert t.user_attrs[Attr.TRAIN_SEED] == original.user_attrs[Attr.TRAIN_SEED] + 1
        assert t.user_attrs[Attr.EPOCHS] == scripted_trials.EPOCHS
    stats = repeat_stats(study)
    assert stats[seed].values[1][0] == stats[seed].values[0][0] + 0.5  # the scripted noise
    rows = study_rows(study)
    assert not any(r["repeat_of"] is not None for r in rows)  # a repeat is not a point
    for row in rows:
        assert len(row["accuracy_runs"]) == 2 and row["accuracy_std"] > 0
        assert row["accuracy"] == sum(row["accuracy_runs"]) / 2

    from dimsearch.search.show import study_table

    console = Console(width=200, record=True)
    console.print(study_table(study, rows, all_trials=False))
    text = console.export_text()
    assert " ± " in text and "(2)" in text

    again, _ = _run(tmp_path, 0, monkeypatch, early="moasha", repeats=2)
    assert len(again.trials) == len(study.trials)  # nothing missing, nothing re-trained


def test_repeats_go_on_until_every_front_member_has_its_runs(
    tmp_path, monkeypatch, local_ray
) -> None:
    """A lucky first run leaves the front once its repeat lands 20 points lower, and an
    architecture trained once takes its place: it is repeated too, in a further round, so the
    front a reader sees is mean +- spread throughout (one round left it half single runs)."""
    from dimsearch.search.study import front_trials, repeat_stats

    study, _ = _run(tmp_path, 6, monkeypatch, early="none", repeats=2, depth1="[2, 10]")
    stats = repeat_stats(study)
    front = front_trials(study)
    assert front
    for t in front:
        assert t.number in stats and len(stats[t.number].values) == 2, t.number
    log = (tmp_path / "log.txt").read_text()
    assert "the means moved the front" in log  # the case arose: a second round ran
    lucky = [
        n for n, st in stats.items() if len(st.values) == 2 and st.values[1][0] < st.values[0][0]
    ]
    assert lucky  # and it came from a lucky run's repeat
    again, _ = _run(tmp_path, 0, monkeypatch, early="none", repeats=2, depth1="[2, 10]")
    assert len(again.trials) == len(study.trials)  # a rerun finds nothing missing


def test_a_sample_trains_every_draw_in_full_and_resumes_to_its_size(
    tmp_path, monkeypatch, local_ray
) -> None:
    from dimsearch.search.runner import run_sample
    from dimsearch.search.study import SAMPLE_TAG

    monkeypatch.setenv("DIMSEARCH_RAY_DIR", str(tmp_path / "ray"))
    storage = f"sqlite:///{tmp_path / 'bridge.db'}"
    space = _space(tmp_path, 0, early="moasha", repeats=2)  # a sample overrides both

    def record(repeats: int = 1) -> optuna.Study:
        with open(tmp_path / "log.txt", "a") as log:
            run_sample(
                space,
                4,
                repeats=repeats,
                storage=storage,
                console=Console(file=log, width=200),
                trainable=scripted_trials.scripted,
                shutdown_ray=False,
            )
        return optuna.load_study(study_name="bridge", storage=storage)

    def sampled(study: optuna.Study, *states: TrialState) -> list:
        return [
            t
            for t in _trained(study)
            if t.user_attrs.get(Attr.SEED) is None and (not states or t.state in states)
        ]

    first = record()
    assert first.user_attrs[SAMPLE_TAG] == {"n": 4, "repeats": 1}
    assert len(sampled(first)) == 4  # four draws went to training (budget rejections aside)
    assert not sampled(first, TrialState.PRUNED)  # nothing stopped early
    assert not [t for t in first.trials if Attr.REPEAT_OF in t.user_attrs]  # no repeats
    complete = len(sampled(first, TrialState.COMPLETE))
    assert all(t.user_attrs[Attr.EPOCHS] == 4 for t in sampled(first, TrialState.COMPLETE))

    second = record()  # the failed draws are replaced; nothing complete is trained again
    assert len(sampled(second)) == 4 + (4 - complete)

    # repeats measure noise on the seeds and every 10th architecture, not on the best ones
    third = record(repeats=2)
    originals = sorted(
        t.number for t in sampled(third, TrialState.COMPLETE) if Attr.REPEAT_OF not in t.user_attrs
    )
    seed = next(t.number for t in third.trials if t.user_attrs.get(Attr.SEED) == "pit_ti")
    again = {t.user_attrs[Attr.REPEAT_OF] for t in third.trials if Attr.REPEAT_OF in t.user_attrs}
    assert again == {seed, *originals[::10]}


def test_a_search_on_postgresql_records_every_trial_while_readers_read(
    tmp_path, monkeypatch, local_ray, postgres_url
) -> None:
    """A real search against a real PostgreSQL server while `show` and the dashboard's JSON API
    read the study: every trial ends COMPLETE, PRUNED or FAIL, none RUNNING, and neither reader
    saw an error. The dashboard is `dimsearch dashboard` itself, which writes its notes into
    the study as it starts, while the search is writing trials: the two must not collide."""
    import os
    import subprocess
    import sys
    import threading
    import urllib.error
    import urllib.request

    from typer.testing import CliRunner

    from dimsearch.cli import app

    monkeypatch.setenv("DIMSEARCH_RAY_DIR", str(tmp_path / "ray"))
    errors: list[str] = []
    reads = {"show": 0, "dashboard": 0}
    done = threading.Event()
    exists = threading.Event()  # `show` found the study: the dashboard can be started on it
    dash_log = tmp_path / "dashboard.txt"
    dash: list[subprocess.Popen] = []

    def show() -> None:
        while not done.is_set():
            res = CliRunner().invoke(app, ["show", "bridge", "--storage", postgres_url, "--json"])
            # before the driver creates the study, show says so (exit 2): not an error
            if res.exit_code not in (0, 2) or "Traceback" in res.output:
                errors.append(f"show: exit {res.exit_code}: {res.exception!r} {res.output[-500:]}")
            if res.exit_code == 0:
                exists.set()
            reads["show"] += 1
            time.sleep(0.2)

    def get(url: str) -> dict:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def dashboard() -> None:
        while not exists.wait(0.1):
            if done.is_set():
                return
        # started only once the study exists (the dashboard refuses a study that does not),
        # so every answer must be a 200: a 404 here would be a real error, not a race
        cmd = [sys.executable, "-m", "dimsearch", "dashboard", "bridge", "--port", "0"]
        cmd += ["--storage", postgres_url, "--artifacts", str(tmp_path / "artifacts")]
        with open(dash_log, "w") as out:
            dash.append(
                subprocess.Popen(
                    cmd,
                    cwd=tmp_path,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        base = None
        while base is None and not done.is_set() and dash[0].poll() is None:
            for line in dash_log.read_text().splitlines():
                if line.startswith("dashboard: http://127.0.0.1:"):
                    base = line.split()[1].split("/dashboard")[0]
            time.sleep(0.1)
        if base is None:
            if dash[0].poll() is not None:
                errors.append(f"dashboard exited {dash[0].returncode}: {dash_log.read_text()}")
            return
        while not done.is_set():
            try:
                studies = get(f"{base}/api/studies")["study_summaries"]
                (sid,) = (s["study_id"] for s in studies if s["study_name"] == "bridge")
                detail = get(f"{base}/api/studies/{sid}")
                assert isinstance(detail["trials"], list), detail
                reads["dashboard"] += 1
            except (OSError, ValueError, KeyError, AssertionError) as err:  # HTTPError is one
                errors.append(f"dashboard: {err!r}")
            time.sleep(0.3)

    readers = [threading.Thread(target=show), threading.Thread(target=dashboard)]
    for t in readers:
        t.start()
    try:
        with open(tmp_path / "log.txt", "a") as log:
            run(
                _space(tmp_path, 6),
                storage=postgres_url,
                trials=6,
                console=Console(file=log, width=200),
                trainable=scripted_trials.scripted,
                shutdown_ray=False,
            )
    finally:
        done.set()
        for t in readers:
            t.join()
        for proc in dash:
            if proc.poll() is not None:  # it must still be serving: a crash is an error
                errors.append(f"dashboard exited {proc.returncode}: {dash_log.read_text()}")
            stop(proc)
    study = optuna.load_study(study_name="bridge", storage=postgres_url)
    assert not errors, errors[0]
    assert reads["show"] >= 3 and reads["dashboard"] >= 3, reads
    assert len(_trained(study)) >= 6
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def _open(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_trial_that_never_reports_fails_with_a_reason(tmp_path, monkeypatch, local_ray) -> None:
    study, summary = _run(tmp_path, 2, monkeypatch, depth1="[7]", seeds="[]")
    trained = _trained(study)
    assert len(trained) == 2 and not _open(study)
    for t in trained:
        assert t.state == TrialState.FAIL
        assert t.user_attrs[Attr.REASON] == "the trial ended without reporting any result"
    assert summary.counts == {"complete": 0, "pruned": 0, "failed": 2, "rejected": 0}


def test_a_nan_objective_is_failed_with_a_reason_not_left_or_completed(
    tmp_path, monkeypatch, local_ray
) -> None:
    """A trial that trains in full but whose latency figure is NaN cannot be told COMPLETE
    (Optuna refuses NaN values): it is recorded FAIL, saying why ("could not record: The value
    nan is not acceptable"), with its curve, and counted as failed."""
    study, summary = _run(tmp_path, 2, monkeypatch, depth1="[8]", seeds="[]", early="none")
    trained = _trained(study)
    assert len(trained) == 2 and not _open(study)
    for t in trained:
        assert t.state == TrialState.FAIL
        reason = t.user_attrs[Attr.REASON]
        assert reason.startswith("could not record:") and "nan" in reason, reason
        assert t.user_attrs[Attr.EPOCHS] == scripted_trials.EPOCHS  # the curve is kept
    assert summary.counts == {"complete": 0, "pruned": 0, "failed": 2, "rejected": 0}


def test_a_trial_over_the_latency_budget_is_pruned_before_training(
    tmp_path, monkeypatch, local_ray
) -> None:
    """The real trainable measures latency first; over ``budgets.max_latency_ms`` the trial
    ends PRUNED with the measured figure and the reason, and trains no epoch."""
    from dimsearch.search.trainable import run_trial

    budgets = "{max_gflops: 5.0, max_latency_ms: 0.001}"
    # predict: false, so the trials reach the measurement (a prediction would reject them all
    # before building: tests/test_latency_gate.py holds that path)
    study, summary = _run(
        tmp_path, 1, monkeypatch, trainable=run_trial, budgets=budgets, predict="false"
    )
    trained = _trained(study)
    assert len(trained) == 2 and not _open(study)  # the seed and one sample
    for t in trained:
        assert t.state == TrialState.PRUNED
        reason = t.user_attrs[Attr.REASON]
        assert reason.startswith("over budget after measuring: latency"), reason
        assert "0.001" in reason or "0.00" in reason
        assert t.user_attrs[Attr.LATENCY_MS] > 0.001
        assert t.user_attrs[Attr.LATENCY]["device"] == "cpu"
        assert t.user_attrs[Attr.EPOCHS] == 0 and t.user_attrs[Attr.CURVE] == []
    assert summary.counts == {"complete": 0, "pruned": 2, "failed": 0, "rejected": 0}


def test_a_search_whose_samples_are_all_rejected_gives_up_and_says_so(
    tmp_path, monkeypatch, local_ray
) -> None:
    """Every sample over budget: after `MAX_REJECTED_IN_A_ROW` rejections in a row the search
    stops with a message; each rejection is one PRUNED trial with its reason, none trained.
    (The limit is lowered from 2000 so the test is quick; the logic is the same.)"""
    from dimsearch.search import bridge

    monkeypatch.setattr(bridge, "MAX_REJECTED_IN_A_ROW", 25)
    study, summary = _run(tmp_path, 5, monkeypatch, seeds="[]", budgets="{max_gflops: 0.0001}")
    assert len(study.trials) == 25 and not _open(study)
    for t in study.trials:
        assert t.state == TrialState.PRUNED and Attr.EPOCHS not in t.user_attrs
        assert t.user_attrs[Attr.REASON].startswith("over budget before training: ")
        assert "GFLOPs > max_gflops 0.0001" in t.user_attrs[Attr.REASON]
    said = " ".join((tmp_path / "log.txt").read_text().split())
    assert "25 samples in a row were invalid or over budget; stopping" in said
    assert summary.counts == {"complete": 0, "pruned": 25, "failed": 0, "rejected": 25}


@pytest.mark.slow
def test_a_resumed_search_does_not_replay_its_random_start(tmp_path, monkeypatch, local_ray):
    """The second session's sampler is reseeded past the stored trials: its first sample is
    not the first session's first sample again (TPE's start-up samples are random)."""

    def sampled(study: optuna.Study, after: int) -> list[dict]:
        return [
            t.params
            for t in study.trials
            if t.number >= after and t.user_attrs.get(Attr.SEED) is None
        ]

    quick = {"depth1": "[1, 2]", "early": "none"}  # trials that train in full, fast
    first, _ = _run(tmp_path, 2, monkeypatch, **quick)
    n = len(first.trials)
    second, _ = _run(tmp_path, 2, monkeypatch, **quick)
    assert sampled(first, 0) and sampled(second, n)
    assert sampled(second, n)[0] != sampled(first, 0)[0]


def test_a_time_budget_stops_the_search_and_leaves_nothing_running(
    tmp_path, monkeypatch, local_ray
) -> None:
    """``search.timeout_min``: slow trials (4 s each) under a 6 s budget. The session ends
    long before its 20 trials, the trials it cut are FAIL saying the budget ran out, and no
    trial stays RUNNING."""
    study, summary = _run(
        tmp_path, 20, monkeypatch, depth1="[9]", seeds="[]", search=", timeout_min: 0.1"
    )
    trained = _trained(study)
    assert trained and len(trained) < 20 and not _open(study)
    cut = [t for t in trained if t.state != TrialState.COMPLETE]
    assert cut
    for t in cut:
        assert t.state == TrialState.FAIL
        assert t.user_attrs[Attr.REASON] == "the time budget (0.1 min) ran out first"
    assert not summary.interrupted


def test_a_search_on_a_journal_file_records_and_shows(tmp_path, monkeypatch, local_ray) -> None:
    """``--storage runs/pit.jsonl``: Optuna's journal file storage, written by a search and
    read by `dimsearch show`."""
    from typer.testing import CliRunner

    from dimsearch.cli import app

    journal = tmp_path / "runs" / "bridge.jsonl"
    journal.parent.mkdir()
    study, _ = _run(tmp_path, 2, monkeypatch, storage=str(journal), early="none")
    assert journal.stat().st_size > 0 and not (tmp_path / "studies").exists()
    assert len(_trained(study)) == 3 and not _open(study)
    res = CliRunner().invoke(app, ["show", "bridge", "--storage", str(journal), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows and {r["number"] for r in rows} <= {
        t.number for t in study.trials if t.state == TrialState.COMPLETE
    }


def test_a_study_measured_on_another_device_kind_is_refused(
    tmp_path, monkeypatch, local_ray
) -> None:
    """Latencies from a CPU and a GPU do not compare: resuming a study recorded on cuda with
    a space that measures on cpu exits 2 with one line, and the study is left as it was."""
    from typer.testing import CliRunner

    from dimsearch.cli import app

    storage = f"sqlite:///{tmp_path / 'bridge.db'}"
    study, _ = _run(tmp_path, 1, monkeypatch, storage=storage)
    assert study.user_attrs[Attr.LATENCY_KIND] == "cpu"
    study.set_user_attr(Attr.LATENCY_KIND, "cuda")  # as if measured on a GPU node
    before = [(t.number, t.state, t.values) for t in study.trials]

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "bridge.yaml", "--storage", storage])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert "measured latency on 'cuda'; this space asks 'cpu'" in said
    assert "Traceback" not in res.output
    again = optuna.load_study(study_name="bridge", storage=storage)
    assert [(t.number, t.state, t.values) for t in again.trials] == before
    assert again.user_attrs[Attr.LATENCY_KIND] == "cuda"
