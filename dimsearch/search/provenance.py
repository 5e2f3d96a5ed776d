"""What a study was recorded with: library versions, the source commit, the proxy data's cache.

A study grows over many sessions, possibly on other machines; a figure trained under torch 2.3
and one under torch 2.5, or on a re-prepared dataset, may not compare. Each session of `run`
records `current_versions` in the study (`Attr.VERSIONS`), and the trials report the checksum
of the data cache they trained on (`Attr.DATA_CACHE`); a session that resumes under other ones
is told what changed (`changes`), and goes on: the study is the user's to judge, not ours to
refuse.

Pure functions; git is asked with a short timeout and its absence is not an error.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "changes", "current_versions", "source_commit"]

# the libraries whose versions change what a trial measures or how a study is read
PACKAGES = ("torch", "timm", "optuna", "ray")
_GIT_TIMEOUT_S = 10


def source_commit(root: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the dimsearch source tree when it is a git checkout of its own,
    else ``(None, None)`` (an installed wheel, or no git). ``dirty``: tracked files differ from
    the commit (untracked files are not counted)."""
    import dimsearch

    root = root or Path(dimsearch.__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():  # inside someone else's repo
        return None, None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def current_versions() -> dict[str, Any]:
    """This process's dimsearch, torch, timm, optuna and ray versions (None where one is not
    installed), and the source commit: ``git_commit``, ``git_dirty``."""
    import dimsearch

    out: dict[str, Any] = {"dimsearch": dimsearch.__version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["git_commit"], out["git_dirty"] = source_commit()
    return out


def changes(old: Any, new: Mapping[str, Any]) -> list[str]:
    """What differs from a recorded provenance dict to ``new``: ``["torch 2.3.0 -> 2.4.1"]``.

    Only keys recorded on both sides count (a study from before a key was recorded is not
    "changed"); a recorded value that is not a dict (edited by hand) compares as nothing.
    """
    if not isinstance(old, Mapping):
        return []
    return [f"{key} {old[key]} -> {new[key]}" for key in new if key in old and old[key] != new[key]]
