"""The local Ray ends with its driver, however the driver ends (Linux).

Ray ties its GCS server and raylet to the process that started them (the kernel kills them
when it dies), but not what the raylet started: its dashboard and runtime-env agents and the
trial workers notice the loss, try to report it to the GCS that is gone and give up only
after Ray's 60 s RPC timeout. After a ``kill -9`` of the driver they were seen training on
for over a minute, holding CPUs and memory a rerun wants.

`start` marks every process the local Ray will start (an environment variable they inherit)
and starts a small watcher that holds the read end of a pipe whose write end only the driver
holds. While the driver lives, the watcher also notes the driver's descendants once a second
(pid and start time): Ray's dashboard and runtime-env agents are started by the raylet with
an environment of Ray's making, without the mark, and on a loaded machine they outlived a
killed driver by 15 s and more. When the driver ends, by any means, the pipe closes, and the
watcher kills every process still carrying the mark and every noted descendant still alive
(the same pid *and* start time, so a recycled pid is never hit). Neither the mark nor the
notes rely on the process tree at that moment, because by then the parents are dead and the
orphans have been reparented.

Run as ``python -m dimsearch.search.reaper TOKEN`` by `start`; it touches nothing but
processes whose environment carries ``DIMSEARCH_RAY_OWNER=TOKEN`` and processes it saw
descend from the driver (whose pid TOKEN begins with), and those only once the driver is gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

__all__ = ["MARK", "descendants", "marked_processes", "start"]

MARK = "DIMSEARCH_RAY_OWNER"
GRACE_S = 1.0  # after the driver ends: a moment for Ray's own shutdown to finish first
GIVE_UP_S = 30.0  # a process that survives SIGKILL this long is not ours to wait for
NOTE_EVERY_S = 1.0  # how often the driver's descendants are noted while it lives


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


def descendants(root: int) -> dict[int, str]:
    """The live descendants of process ``root``, as pid -> start time (the kernel's, in clock
    ticks since boot: a pid and its start time name one process, even once pids recycle)."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _stat(int(name))
        if stat is not None and stat[0] != "Z":
            parents[int(name)] = int(stat[1])
            starts[int(name)] = stat[_STARTTIME]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return found


_STARTTIME = 19  # field 22 of /proc/PID/stat, counted from the state (field 3)


def _started(pid: int) -> str | None:
    """The start time of live process ``pid``, or None."""
    stat = _stat(pid)
    return None if stat is None else stat[_STARTTIME]


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _reap(token: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is the driver's
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    driver = int(token.split("-")[0])
    noted: dict[int, str] = {}
    fd = sys.stdin.fileno()
    while True:  # until EOF: the driver has ended
        noted.update(descendants(driver))
        ready, _, _ = select.select([fd], [], [], NOTE_EVERY_S)
        if ready and not os.read(fd, 4096):
            break
    time.sleep(GRACE_S)
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        pids = set(marked_processes(token))
        pids |= {p for p, start in noted.items() if _started(p) == start}
        pids.discard(os.getpid())  # the watcher is a descendant of the driver too
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):  # ended meanwhile
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


if __name__ == "__main__":
    _reap(sys.argv[1])
