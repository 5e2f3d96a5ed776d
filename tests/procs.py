"""Stopping the child processes tests start (a dashboard, a search driver): one copy of the
polite-then-firm sequence, so no test leaves a server behind when it fails half-way."""

from __future__ import annotations

import subprocess


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
