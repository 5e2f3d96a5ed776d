"""The local Ray ends with its driver, however the driver ends (Linux).

Ray ties its GCS server and raylet to the process that started them (the kernel kills them
when it dies), but not what the raylet started: its dashboard and runtime-env agents and the
trial workers notice the loss, try to report it to the GCS that is gone and give up only
after Ray's 60 s RPC timeout. After a ``kill -9`` of the driver they were seen training on
for over a minute, holding CPUs and memory a rerun wants.

`start` marks every process the local Ray will start (an environment variable they inherit)
and starts a small watcher that holds the read end of a pipe whose write end only the driver
holds. When the driver ends, by any means, the pipe closes, and the watcher kills every
process still carrying the mark. The mark, not the process tree, finds them, because by then
their parents are dead and they have been reparented.

Run as ``python -m dimsearch.search.reaper TOKEN`` by `start`; it touches nothing but
processes whose environment carries ``DIMSEARCH_RAY_OWNER=TOKEN``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

__all__ = ["MARK", "marked_processes", "start"]

MARK = "DIMSEARCH_RAY_OWNER"
GRACE_S = 1.0  # after the driver ends: a moment for Ray's own shutdown to finish first
GIVE_UP_S = 30.0  # a process that survives SIGKILL this long is not ours to wait for


def start() -> subprocess.Popen | None:
    """Start the watcher and mark this process's environment, so that everything started
    from now on (the local Ray) is reaped when this process ends. None off Linux."""
    mine = os.environ.get(MARK, "").split("-")[0] == str(os.getpid())
    if not sys.platform.startswith("linux") or mine:  # one watcher per driver process
        return None
    token = f"{os.getpid()}-{time.time_ns()}"
    env = {k: v for k, v in os.environ.items() if k != MARK}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "dimsearch.search.reaper", token],
        stdin=subprocess.PIPE,  # our end is not inherited (close_fds): only we hold it
        env=env,
        start_new_session=True,  # a signal to the driver's process group does not reach it
    )
    os.environ[MARK] = token
    return watcher


def marked_processes(token: str) -> list[int]:
    """PIDs of the live processes whose environment carries ``MARK=token``."""
    want = f"{MARK}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _reap(token: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is the driver's
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns at EOF: the driver has ended
    time.sleep(GRACE_S)
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        pids = marked_processes(token)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):  # ended meanwhile
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


if __name__ == "__main__":
    _reap(sys.argv[1])
