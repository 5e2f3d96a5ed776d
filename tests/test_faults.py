"""Faults a search survives: signals, a killed driver, a full or read-only storage, a database
server that restarts. Each runs the real `dimsearch run` in a subprocess (real Ray, real
sqlite or PostgreSQL) on the tiny space of test_search_run.py.

What each fault must leave: no trial RUNNING (every open trial FAIL with the reason), a rerun
that resumes (a seed lost to the fault is trained again), and no Ray process of the driver
alive for more than a few seconds after it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_search_run import (
    DIMSEARCH,
    ROOT,
    _env,
    _run_dimsearch,
    _start_run,
    _tiny_study,
    _wait_for_training,
    write_space,
)

from dimsearch.search.study import Attr, FailCause, seeds_to_train

DIRECTIONS = ["maximize", "minimize", "minimize"]  # the tiny space's objectives


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: the driver started its own session,
    and Ray's processes inherit it."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(name))
    return found


def _survivors_after(sid: int, seconds: float) -> list[str]:
    """The session's processes still alive ``seconds`` after the driver ended (sooner if
    none is left), as ``pid: command line`` so a failure says which they were."""
    deadline = time.time() + seconds
    while _session(sid) and time.time() < deadline:
        time.sleep(0.5)
    return [f"{pid}: {_cmdline(pid)}" for pid in _session(sid)]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            line = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
        with open(f"/proc/{pid}/environ", "rb") as f:
            marked = any(v.startswith(b"DIMSEARCH_RAY_OWNER=") for v in f.read().split(b"\0"))
        with open(f"/proc/{pid}/stat") as f:
            ppid = f.read().rsplit(")", 1)[1].split()[1]
        return f"{line} (parent {ppid}{', marked' if marked else ', not marked'})"
    except OSError:
        return "(gone)"


def _kill_session(sid: int) -> None:
    for pid in _session(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _add_seed_trial(study: optuna.Study, name: str, state: TrialState, **attrs: object) -> None:
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=[1.0, 1.0, 1.0] if state == TrialState.COMPLETE else None,
            user_attrs={Attr.SEED: name, **attrs},
        )
    )


def test_a_seed_lost_to_a_stopped_run_is_trained_again_one_that_broke_is_not(
    tmp_path: Path,
) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=DIRECTIONS)
    _add_seed_trial(study, "killed", TrialState.FAIL, **{Attr.FAIL_CAUSE: FailCause.KILLED})
    _add_seed_trial(study, "stopped", TrialState.FAIL, **{Attr.FAIL_CAUSE: FailCause.INTERRUPTED})
    _add_seed_trial(study, "broke", TrialState.FAIL, **{Attr.FAIL_CAUSE: FailCause.ERROR})
    _add_seed_trial(study, "done", TrialState.COMPLETE)
    _add_seed_trial(study, "retried", TrialState.FAIL, **{Attr.FAIL_CAUSE: FailCause.ENDED})
    _add_seed_trial(study, "retried", TrialState.COMPLETE)
    # a study written before the cause was recorded: the fixed words of the reason
    _add_seed_trial(
        study,
        "old_orphan",
        TrialState.FAIL,
        **{Attr.REASON: "left RUNNING by a driver that stopped (killed or crashed); ..."},
    )
    _add_seed_trial(study, "old_error", TrialState.FAIL, **{Attr.REASON: "RuntimeError: boom"})
    names = ["killed", "stopped", "broke", "done", "retried", "old_orphan", "old_error", "new"]
    assert seeds_to_train(study, names) == ["killed", "stopped", "old_orphan", "new"]


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if got.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {got.stderr.strip()}")


def _fill(where: Path) -> None:
    """Fill the filesystem of ``where`` to the last byte."""
    with contextlib.suppress(OSError), open(where / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def test_a_full_studies_folder_is_a_clear_error_and_leaves_no_empty_db(tmp_path: Path) -> None:
    full = tmp_path / "full"
    _mount_tmpfs(full, "64k")
    try:
        _fill(full)
        space = write_space(tmp_path / "tiny.yaml", epochs=1, trials=0)
        proc = subprocess.run(
            [*DIMSEARCH, "run", str(space), "--storage", f"sqlite:///{full / 'tiny.db'}"],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        said = " ".join(proc.stderr.split())
        assert "cannot write the study at" in said and "full" in said.lower(), said
        assert "Traceback" not in proc.stderr
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no 0-byte tiny.db
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


@pytest.mark.slow
def test_sigterm_to_the_process_group_records_every_trial_and_the_rerun_retrains_the_seed(
    tmp_path: Path,
) -> None:
    """What ``timeout`` and batch schedulers do: SIGTERM to every process of the job, Ray's
    included. Before: the driver hung 61 s on the dead Ray, exited 1, left both trials
    RUNNING, and the seed was never trained again."""
    space = write_space(tmp_path / "tiny.yaml", epochs=40, trials=2, concurrent=2)
    db = tmp_path / "studies" / "tiny.db"
    proc = _start_run(tmp_path, space, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_training(db)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=45)  # Ray's own timeout, the old hang, is 60 s
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in (0, 128 + signal.SIGTERM), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert _survivors_after(proc.pid, 15) == []
    study = _tiny_study(db)
    started = [t for t in study.trials if Attr.RAY_TRIAL in t.user_attrs]
    assert len(started) == 2 and all(t.state == TrialState.FAIL for t in started)
    for t in started:
        assert t.user_attrs[Attr.REASON].startswith(("terminated", "interrupted"))
        assert t.user_attrs[Attr.FAIL_CAUSE] == FailCause.INTERRUPTED

    _run_dimsearch(tmp_path, "run", str(write_space(space, epochs=1, trials=1)), "--trials", "0")
    seeds = [t for t in _tiny_study(db).trials if t.user_attrs.get(Attr.SEED) == "pit_ti"]
    assert [t.state for t in seeds] == [TrialState.FAIL, TrialState.COMPLETE]


# A driver that starts the reaper, then a child (Ray's raylet) that starts a grandchild (an
# agent) in a session of its own, both with an environment without the mark, as the raylet
# gives its agents. Killing the driver orphans both, as a kill -9 of a search's driver does.
UNMARKED_GRANDCHILD = """
import os, subprocess, sys, time
from dimsearch.search import reaper
reaper.start()
env = {k: v for k, v in os.environ.items() if k != reaper.MARK}
child = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(120)'], start_new_session=True); print(p.pid, flush=True); "
    "time.sleep(120)"],
    env=env, stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux-only")
def test_the_reaper_ends_an_unmarked_orphan_the_driver_started(tmp_path: Path) -> None:
    """What Ray's agents did on a loaded machine: started without the mark, reparented to
    init once their parent died, alive 15 s after a ``kill -9`` of the driver."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DIMSEARCH_RAY_OWNER", None)
    driver = subprocess.Popen(
        [sys.executable, "-c", UNMARKED_GRANDCHILD], env=env, stdout=subprocess.PIPE, text=True
    )
    child, orphan = (int(p) for p in driver.stdout.readline().split())
    try:
        with open(f"/proc/{orphan}/environ", "rb") as f:
            assert b"DIMSEARCH_RAY_OWNER=" not in f.read()  # the mark cannot find it
        time.sleep(2.5)  # the reaper notes the driver's descendants once a second
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 10
        while (_alive(child) or _alive(orphan)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), f"the child {child} outlived the driver by 10 s"
        assert not _alive(orphan), f"the grandchild {orphan} outlived the driver by 10 s"
    finally:
        for pid in (child, orphan):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        driver.stdout.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_of_the_driver_leaves_no_ray_process_behind(tmp_path: Path) -> None:
    """The driver alone is killed (its Ray is not signalled). Before: Ray's agents and the
    trial's worker lived on for 63 s, waiting on the dead GCS."""
    space = write_space(tmp_path / "tiny.yaml", epochs=40, trials=2, concurrent=1)
    db = tmp_path / "studies" / "tiny.db"
    proc = _start_run(tmp_path, space, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_training(db)
        assert len(_session(proc.pid)) > 3  # the driver, the GCS, the raylet, a worker...
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        survivors = _survivors_after(proc.pid, 15)
    finally:
        _kill_session(proc.pid)
    assert survivors == []


@pytest.mark.slow
def test_a_full_disk_mid_run_stops_with_a_clear_error_and_the_rerun_closes_the_rest(
    tmp_path: Path,
) -> None:
    """The study's filesystem fills up while a trial trains. Before: exit 1 with a traceback
    blaming "invalid data in the commit". Nothing can be written to a full disk, so the trial
    left RUNNING is the next run's to close, once there is room again."""
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "4m")
    try:
        url = f"sqlite:///{mnt / 'tiny.db'}"
        space = write_space(tmp_path / "tiny.yaml", epochs=40, trials=2, concurrent=1)
        proc = _start_run(
            tmp_path,
            space,
            "--storage",
            url,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for_training(mnt / "tiny.db")
            _fill(mnt)
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        said = " ".join(out.split())
        assert proc.returncode == 2, out[-3000:]
        assert "Traceback" not in out and "cannot write the study at" in said, out[-3000:]
        assert "full" in said.lower()
        assert _survivors_after(proc.pid, 15) == []
        (mnt / "filler").unlink()
        _run_dimsearch(
            tmp_path,
            "run",
            str(write_space(space, epochs=1, trials=1)),
            "--trials",
            "0",
            "--storage",
            url,
        )
        study = optuna.load_study(study_name="tiny", storage=url)
        assert not [t for t in study.trials if t.state == TrialState.RUNNING]
        seeds = [t for t in study.trials if t.user_attrs.get(Attr.SEED) == "pit_ti"]
        assert seeds[-1].state == TrialState.COMPLETE  # the lost reference trained again
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _immutable(path: Path, on: bool) -> None:
    """Make ``path`` read-only in a way that holds even for root and for a file already open
    for writing (a read-only remount is refused while the driver holds the db open)."""
    got = subprocess.run(
        ["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True
    )
    if got.returncode:
        pytest.skip(f"cannot make a file immutable here (needs root, ext4): {got.stderr.strip()}")


@pytest.mark.slow
def test_read_only_storage_mid_run_stops_with_a_clear_error_and_the_rerun_closes_the_rest(
    tmp_path: Path,
) -> None:
    """The study's file turns read-only while a trial trains, the sibling of the full disk:
    the driver stops with the same one line, and the rerun, once the file is writable again,
    closes the trial left RUNNING and trains its seed again."""
    db = tmp_path / "studies" / "tiny.db"
    space = write_space(tmp_path / "tiny.yaml", epochs=40, trials=2, concurrent=1)
    proc = _start_run(tmp_path, space, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_training(db)
        _immutable(db, True)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["chattr", "-i", str(db)], check=False)
    said = " ".join(out.split())
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "cannot write the study at" in said, out[-3000:]
    assert "studies/tiny.db" in said and "read-only" in said, said
    assert _survivors_after(proc.pid, 15) == []
    _run_dimsearch(tmp_path, "run", str(write_space(space, epochs=1, trials=1)), "--trials", "0")
    study = _tiny_study(db)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    seeds = [t for t in study.trials if t.user_attrs.get(Attr.SEED) == "pit_ti"]
    assert seeds[-1].state == TrialState.COMPLETE  # the lost reference trained again


@pytest.mark.slow
def test_a_postgres_restart_mid_search_loses_nothing(tmp_path: Path, postgres_url: str) -> None:
    """The database server restarts while trials train: the search rides it out (pre-ping
    replaces the dead pooled connections, writes wait for the server) and ends with every
    trial recorded."""
    import pg_server

    optuna.create_study(study_name="tiny", storage=postgres_url, directions=DIRECTIONS)
    folder = os.environ.get("DIMSEARCH_TEST_PG_DIR")
    if not folder:
        pytest.skip("restarting needs the server's folder: set DIMSEARCH_TEST_PG_DIR")
    space = write_space(tmp_path / "tiny.yaml", epochs=6, trials=1, concurrent=2)
    proc = _start_run(
        tmp_path,
        space,
        "--storage",
        postgres_url,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_training(postgres_url)
        port = int((Path(folder) / "port").read_text())
        pg_server.stop(Path(folder))
        time.sleep(3)  # writes fail meanwhile
        pg_server.start(Path(folder), port=port)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    trained = [t for t in study.trials if Attr.RAY_TRIAL in t.user_attrs]
    assert len(trained) == 2 and all(t.state == TrialState.COMPLETE for t in trained)
