"""A per-node lock that keeps latency measurements and proxy training off the device together.

A latency figure taken while other trials train on the same cores (or the same shared GPU)
measures the neighbours as much as the model. So a measurement holds the device alone, and
training gives the device up at each epoch boundary while a measurement wants it.

Two `flock` files per device kind, in a per-user directory of the node's temp dir:

* ``<kind>.device.lock``: training holds it **shared** for one epoch at a time; a measurement
  holds it **exclusive**. Any number of trials train together; a measurement runs alone.
* ``<kind>.wanted.lock``: a measurement holds it **shared** from the moment it asks for the
  device until it is done: the "wanted" marker. Before each epoch, training takes it
  **exclusive** and lets go at once: that returns only when no measurement is waiting or
  running. Without the marker a steady stream of staggered epochs would always hold the
  device lock shared and an exclusive request could starve.

So a measurement waits at most for the epochs in progress to end (one epoch), and training is
paused while it runs. A training process holds ``cpu`` plus its own device kind (a GPU trial's
Python loop still takes a core, which a batch-1 CPU measurement would feel); a measurement
takes only its own kind (a batch-128 GPU measurement barely notices busy CPU cores).

Why file locks and not a Ray named actor: the contention is per node (its cores, its GPU), and
a lock file in the node's temp dir has exactly that scope without per-node actor names and
node affinity; the kernel drops a dead process's locks, so a crashed trial cannot leave the
device taken (an actor would need leases or heartbeats); and it works the same outside Ray
(``dimsearch latency check``, benchmarks, tests) with no extra process or round trip.
Its limit: it coordinates processes of one user on one node, which is what shares a device.

Set ``DIMSEARCH_LOCK_DIR`` to use another directory (tests do, to stay private).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented limit)
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_DIR_ENV", "Hold", "device_kind", "lock_dir", "measurement_lock", "training_slot"]

LOCK_DIR_ENV = "DIMSEARCH_LOCK_DIR"
_POLL_S = 0.02  # lock polling period when a timeout is set: small next to any measurement

# Per process: which kinds this thread measures on (nested measurements are no-ops) or trains
# on (a measurement from inside a training slot would wait for itself).
_state = threading.local()
_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Hold:
    """What holding the lock cost: the kind locked and the seconds spent waiting for it."""

    kind: str
    waited_s: float


def device_kind(device: Any) -> str:
    """``cpu``, ``cuda``, ...: the device type, which is what a lock is keyed by."""
    return str(getattr(device, "type", device)).split(":", 1)[0]


def lock_dir() -> Path:
    """The lock directory: ``$DIMSEARCH_LOCK_DIR``, else ``<tmp>/dimsearch-<uid>/locks``."""
    env = os.environ.get(LOCK_DIR_ENV)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(env) if env else Path(tempfile.gettempdir()) / f"dimsearch-{uid}" / "locks"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class _Flock:
    """One open lock file; `acquire` may poll with a deadline, `release` closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, shared: bool, deadline: float | None = None) -> None:
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if deadline is None:
            fcntl.flock(self.fd, op)
            return
        while True:
            try:
                fcntl.flock(self.fd, op | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.close()
                    raise TimeoutError(
                        f"waited past the timeout for {self.path}: training or another "
                        f"measurement holds the device"
                    ) from None
                time.sleep(_POLL_S)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def _files(kind: str) -> tuple[Path, Path]:
    d = lock_dir()
    return d / f"{kind}.device.lock", d / f"{kind}.wanted.lock"


def _depth(name: str) -> dict[str, int]:
    if not hasattr(_state, name):
        setattr(_state, name, {})
    return getattr(_state, name)


def _thread_lock(kind: str) -> threading.RLock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(kind, threading.RLock())


@contextmanager
def measurement_lock(device: Any = "cpu", *, timeout: float | None = None) -> Iterator[Hold]:
    """Hold ``device``'s kind alone on this node while the block runs.

    Marks the device wanted (so training pauses at its next epoch boundary), then waits for
    the exclusive device lock. Re-entrant within a thread: a measurement inside a measurement
    (a calibration timing its parts) holds the lock once. Other threads of the process wait.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``; keyed by its type.
        timeout: seconds to wait at most; None waits as long as it takes.

    Yields:
        A `Hold` with the seconds spent waiting.

    Raises:
        TimeoutError: the device was not free within ``timeout``.
        RuntimeError: this thread is inside a `training_slot` on that kind (it would wait for
            itself).
    """
    kind = device_kind(device)
    measuring = _depth("measuring")
    if measuring.get(kind):
        measuring[kind] += 1
        try:
            yield Hold(kind, 0.0)
        finally:
            measuring[kind] -= 1
        return
    if _depth("training").get(kind):
        raise RuntimeError(
            f"a latency measurement on {kind!r} was asked for inside a training slot of the "
            f"same thread; it would wait for itself. Measure before or after the epoch."
        )
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    local = _thread_lock(kind)
    if not local.acquire(timeout=-1 if timeout is None else timeout):
        raise TimeoutError(f"another thread of this process measured on {kind!r} past the timeout")
    with ExitStack() as stack:
        stack.callback(local.release)
        if fcntl is not None:
            device_path, wanted_path = _files(kind)
            wanted = _Flock(wanted_path)
            stack.callback(wanted.close)
            wanted.acquire(shared=True, deadline=deadline)  # the marker: training now pauses
            held = _Flock(device_path)
            stack.callback(held.close)  # LIFO: the device goes before the marker
            held.acquire(shared=False, deadline=deadline)
        measuring[kind] = 1
        stack.callback(measuring.pop, kind, None)
        yield Hold(kind, time.monotonic() - start)


@contextmanager
def training_slot(device: Any = "cpu") -> Iterator[Hold]:
    """Hold the device for one unit of training (an epoch), after any wanted measurement.

    Waits while a measurement wants or holds ``cpu`` or ``device``'s kind, then holds both
    shared until the block ends. Call it around each epoch, not around the whole run, so that
    a measurement waits at most one epoch.

    Yields:
        A `Hold` with the seconds this training spent paused for measurements.
    """
    kinds = sorted({"cpu", device_kind(device)})
    start = time.monotonic()
    training = _depth("training")
    with ExitStack() as stack:
        if fcntl is not None:
            for kind in kinds:
                # Let every waiting or running measurement through first (see module doc).
                gate = _Flock(_files(kind)[1])
                try:
                    gate.acquire(shared=False)
                finally:
                    gate.close()
            for kind in kinds:
                held = _Flock(_files(kind)[0])
                stack.callback(held.close)
                held.acquire(shared=True)
        waited = time.monotonic() - start
        for kind in kinds:
            training[kind] = training.get(kind, 0) + 1
            stack.callback(training.__setitem__, kind, training[kind] - 1)
        yield Hold("+".join(kinds), waited)
