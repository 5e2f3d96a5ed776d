"""A throwaway PostgreSQL server on 127.0.0.1 for the storage tests, in a folder of its own.

Used two ways, one implementation:

* `.ci/run` starts one before the suite (``python tests/pg_server.py start DIR``) and exports
  the URL it prints as ``DIMSEARCH_TEST_POSTGRES``;
* without that variable, the ``postgres_url`` fixture (tests/conftest.py) starts one itself
  when Debian's ``postgresql`` is installed, and stops it after the session.

The server listens on loopback only, trusts local connections (a test database, no secrets) and
runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["find_bin", "start", "stop"]


def find_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def start(folder: Path, port: int | None = None) -> str:
    """Create a cluster in ``folder``, start it on 127.0.0.1, return its SQLAlchemy URL."""
    bindir = find_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(folder).resolve()
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = port or _free_port()
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            _as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "server.log"),
                "-o",
                f"-h 127.0.0.1 -p {port} -k {folder} -c max_connections=200",
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    (folder / "port").write_text(str(port))
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def stop(folder: Path, mode: str = "fast") -> None:
    """Stop the server of ``folder`` (``mode``: smart, fast or immediate)."""
    bindir = find_bin()
    data = Path(folder).resolve() / "data"
    if bindir is None or not (data / "postmaster.pid").exists():
        return
    subprocess.run(
        _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"]),
        check=False,
        capture_output=True,
    )


if __name__ == "__main__":
    verb, where = sys.argv[1], Path(sys.argv[2])
    if verb == "start":
        print(start(where))
    elif verb == "stop":
        stop(where)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} start|stop FOLDER")
