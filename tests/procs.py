"""Child processes the tests start (a dashboard, a search driver): one way to start a
dashboard and wait for its URL, and one polite-then-firm stop, so no test leaves a server
behind when it fails half-way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIMSEARCH = [sys.executable, "-m", "dimsearch"]


def start_dashboard(db: Path, cwd: Path, timeout_s: float = 120) -> tuple[subprocess.Popen, str]:
    """`dimsearch dashboard DB --port 0` from this checkout; returns the process and the URL
    it printed once serving (the check in `dimsearch dashboard` binds before it prints)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [*DIMSEARCH, "dashboard", str(db), "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("dashboard: http://"):
            return proc, line.split()[1]
    stop(proc)
    raise AssertionError("the dashboard did not start:\n" + "".join(lines))


def stop(proc: subprocess.Popen, grace_s: float = 10) -> int:
    """SIGTERM ``proc``, SIGKILL it if it has not exited after ``grace_s`` seconds, close its
    stdout pipe; returns its exit code."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode
