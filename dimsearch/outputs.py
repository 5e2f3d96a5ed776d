"""Where a command writes its files: the one check of an output folder, made before anything
is written, so a refused ``-o`` leaves nothing behind (no folder, no half a report).

`export -o` and `report -o` (and `compare -o`) name a folder that may not exist yet. Creating
it, or writing into it, fails for reasons that are the user's to fix: the path is an existing
file, a component of it is a file, it is too long for the file system, or its nearest existing
folder is not writable. Each is refused here, up front, with one line that says which.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from dimsearch.errors import OutputError

__all__ = ["check_out_dir"]


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def check_out_dir(path: Path | str, option: str = "--out") -> Path:
    """``path`` as a folder the command may create and write into, or an `OutputError`.

    Nothing is created here: the caller creates the folder once its content is ready.
    """
    out = Path(path)
    where = f"{option} {_shown(out)}"
    try:
        max_name = os.pathconf(_existing(out), "PC_NAME_MAX")
    except (OSError, ValueError):
        max_name = 255
    long = next((p for p in out.parts if len(p.encode()) > max_name), None)
    if long is not None:
        raise OutputError(
            f"{where}: a folder name is {len(long.encode())} bytes long, the file system "
            f"allows {max_name}; expected a shorter path"
        )
    try:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{where} is an existing file; expected a folder (new or existing)")
        base = _existing(out)
    except OSError as err:
        raise OutputError(f"{where}: {err.strerror or err}") from None
    if not base.is_dir():
        raise OutputError(
            f"{where}: {_shown(base)} is a file, so no folder can be made under it; "
            "expected a path whose parents are folders"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(
            f"{where}: {_shown(base)} is not writable ({os.strerror(errno.EACCES)}); "
            "expected a folder you may write in"
        )
    return out


def _existing(path: Path) -> Path:
    """The path itself if it exists, else its nearest existing parent (``.`` at worst)."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")
