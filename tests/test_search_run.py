"""`dimsearch run` / `show` end to end: the real trainable, real Ray, real sqlite studies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tiny_space import tiny_space_text
from typer.testing import CliRunner

from dimsearch.cli import app
from dimsearch.search.study import Attr

ROOT = Path(__file__).resolve().parents[1]
DIMSEARCH = [sys.executable, "-m", "dimsearch"]


def write_space(path: Path, epochs: int = 2, trials: int = 2, concurrent: int = 2) -> Path:
    path.write_text(tiny_space_text(epochs, trials, concurrent))
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, DIMSEARCH_RAY_DIR=str(tmp_path / "ray"), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_dimsearch(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`dimsearch ARGS` run to the end in TMP_PATH; unless it exits 0 the test fails and
    shows the tail of its output."""
    proc = subprocess.run(
        [*DIMSEARCH, *args],
        cwd=tmp_path,
        env=env or _env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _tiny_study(db: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")


def test_run_then_show_with_the_real_trainable(tmp_path: Path, monkeypatch) -> None:
    space = write_space(tmp_path / "tiny.yaml")
    proc = _run_dimsearch(tmp_path, "run", str(space))
    assert "Pareto front" in proc.stdout
    db = tmp_path / "studies" / "tiny.db"
    study = _tiny_study(db)
    trained = [t for t in study.trials if Attr.RAY_TRIAL in t.user_attrs]
    assert len(trained) == 3  # the seed and two samples
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    seed = next(t for t in study.trials if t.user_attrs.get(Attr.SEED) == "pit_ti")
    assert seed.state == TrialState.COMPLETE
    ua = seed.user_attrs
    # costs at the target resolution (64 px here), accuracy from the 16 px proxy
    assert ua[Attr.TARGET_IMG] == 64 and ua[Attr.PROXY_IMG] == 16
    # pit_ti with a 10-class head and its position map sized for a 7x7 grid (64 px)
    assert ua[Attr.PARAMS] == 4_847_272 - 257 * 990 - 64 * (27 * 27 - 7 * 7)
    assert ua[Attr.LATENCY]["device"] == "cpu" and ua[Attr.LATENCY_MS] > 0
    assert len(ua[Attr.CURVE]) == 2 == ua[Attr.EPOCHS]
    assert seed.values[0] == ua[Attr.CURVE][-1]
    assert ua[Attr.NODE]["hostname"] == socket.gethostname()

    # the proxy-trained weights are kept and load into the proxy-sized model
    import torch

    from dimsearch import ArchConfig, build_model

    state = torch.load(ua[Attr.WEIGHTS], weights_only=True)
    proxy = build_model(ArchConfig.from_dict(ua[Attr.ARCH]), num_classes=4, img_size=16)
    proxy.load_state_dict(state)
    assert ua[Attr.PROXY_CLASSES] == 4 and ua[Attr.PROXY_CHANNELS] == 3

    # optuna's own CLI reads the same study
    optuna_cli = shutil.which("optuna", path=str(Path(sys.executable).parent))
    out = subprocess.run(
        [
            optuna_cli,
            "trials",
            "--storage",
            f"sqlite:///{db}",
            "--study-name",
            "tiny",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert len(json.loads(out.stdout)) == len(study.trials)

    # `dimsearch show` marks the seed by name
    monkeypatch.chdir(tmp_path)  # restored after the test, unlike os.chdir
    res = CliRunner().invoke(app, ["show", "tiny", "--all", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert any(r["label"] == "PiT-Ti" for r in rows)
    table = CliRunner().invoke(app, ["show", str(db)])
    assert table.exit_code == 0 and "Pareto front" in table.output


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace("seeds: [pit_ti]", "seeds: [pit_nano]"), "seeds"),
        (lambda t: t.replace("max_concurrent: 2", "max_concurrent: two"), "search.max_concurrent"),
        (lambda t: t.replace("stages: 3", "stagez: 3"), "arch"),
        (lambda t: t.replace("{max_gflops: 1.0}", "{max_gflops: 0.01}"), "budgets"),
    ],
)
def test_bad_space_exits_2_and_creates_no_study(tmp_path: Path, monkeypatch, edit, needle) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(edit(tiny_space_text(1, 1, 2)))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", str(path)])
    assert res.exit_code == 2, res.output
    assert "tiny.yaml" in res.output and needle in res.output
    assert not (tmp_path / "studies").exists()


def test_show_of_a_missing_study_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["show", "nothing"])
    assert res.exit_code == 2 and "no study 'nothing'" in res.output
    assert not (tmp_path / "studies" / "nothing.db").exists()


def _start_run(tmp_path: Path, space: Path, *args: str, **output: object) -> subprocess.Popen:
    """`dimsearch run SPACE ARGS` in the background, in its own process group (so a test can
    signal or kill the driver and everything it started)."""
    return subprocess.Popen(
        [*DIMSEARCH, "run", str(space), *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        start_new_session=True,
        **output,
    )


def _study_is_stored(db: Path, name: str) -> bool:
    """Whether the driver has written the study's row yet, read without touching the schema.

    The sqlite file appears before the driver has made its tables and study row, and opening
    it through optuna in between either misses the study (KeyError) or races the driver's
    own table creation, so the poll asks sqlite directly, read-only."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchall()
    except sqlite3.OperationalError:  # no tables yet, or the driver holds a write lock
        return False
    return bool(rows)


def _wait_for_training(db: Path | str, timeout: float = 300) -> optuna.trial.FrozenTrial:
    """Poll the study (a sqlite file, or a server's URL) until a trial is RUNNING and has
    reported at least one epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(2)
        if isinstance(db, str) or _study_is_stored(db, "tiny"):
            try:
                study = optuna.load_study(
                    study_name="tiny", storage=db if isinstance(db, str) else f"sqlite:///{db}"
                )
            except KeyError:  # the driver has not written the study yet
                continue
            for t in study.trials:
                if t.state == TrialState.RUNNING and t.user_attrs.get(Attr.CURVE):
                    return t
    raise AssertionError(f"no trial started training within {timeout:.0f} s")


@pytest.mark.slow
def test_killed_driver_leaves_no_running_trial_after_rerun(tmp_path: Path) -> None:
    space = write_space(tmp_path / "tiny.yaml", epochs=40, trials=2, concurrent=1)
    db = tmp_path / "studies" / "tiny.db"
    proc = _start_run(tmp_path, space, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        running = _wait_for_training(db)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies without a chance to clean up
        proc.wait()
    _run_dimsearch(tmp_path, "run", str(write_space(space, epochs=1, trials=1)), "--trials", "0")
    study = _tiny_study(db)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    orphan = study.trials[running.number]
    assert orphan.state == TrialState.FAIL
    assert "left RUNNING by a driver that stopped" in orphan.user_attrs[Attr.REASON]
    assert orphan.user_attrs[Attr.CURVE]  # the epochs it did run are kept


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a `ray start --block` node by its PID (and its process group: raylet, gcs...)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_two_node_ray_cluster_runs_trials_on_both_nodes(tmp_path: Path) -> None:
    """A head and a worker node, each with one CPU and its own resource tag, started here.

    Ray advertises a node by the host's own interface address even when told 127.0.0.1
    (``resolve_ip_for_localhost``), so the traffic stays on this machine either way. The
    cluster uses Ray's token authentication, as a shared cluster would.
    """
    import secrets

    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--block"]
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = dict(_env(tmp_path), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    nodes = []
    try:
        nodes.append(
            subprocess.Popen(
                [
                    ray_bin,
                    "start",
                    "--head",
                    f"--port={port}",
                    "--include-dashboard=false",
                    '--resources={"head_node": 1}',
                    *common,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        time.sleep(8)
        nodes.append(
            subprocess.Popen(
                [
                    ray_bin,
                    "start",
                    f"--address={address}",
                    '--resources={"worker_node": 1}',
                    *common,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        space = write_space(tmp_path / "tiny.yaml", epochs=2, trials=3, concurrent=2)
        deadline = time.time() + 120
        while True:  # wait until both nodes have joined
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import ray; ray.init(address='{address}', logging_level='ERROR');"
                    "print(sum(n['Alive'] for n in ray.nodes()))",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if probe.stdout.strip().endswith("2") or time.time() > deadline:
                break
            time.sleep(3)
        assert probe.stdout.strip().endswith("2"), probe.stdout + probe.stderr
        _run_dimsearch(tmp_path, "run", str(space), "--address", address, env=env, timeout=900)
    finally:
        for node in reversed(nodes):
            _stop(node)
    study = _tiny_study(tmp_path / "studies" / "tiny.db")
    trained = [t for t in study.trials if Attr.RAY_TRIAL in t.user_attrs]
    assert len(trained) == 4 and all(t.state == TrialState.COMPLETE for t in trained)
    assert len({t.user_attrs[Attr.NODE]["node_id"] for t in trained}) == 2  # both nodes worked
    assert all(node.poll() is not None for node in nodes)


@pytest.mark.slow
def test_ctrl_c_stops_gracefully_and_says_how_to_resume(tmp_path: Path) -> None:
    space = write_space(tmp_path / "tiny.yaml", epochs=40, trials=2, concurrent=1)
    db = tmp_path / "studies" / "tiny.db"
    proc = _start_run(tmp_path, space, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = _wait_for_training(db)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    said = " ".join(out.split())  # rich wraps long lines when not on a terminal
    assert "interrupted" in said and f"resume with `dimsearch run {space}`" in said
    study = _tiny_study(db)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = study.trials[running.number]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs[Attr.REASON].startswith("interrupted")
