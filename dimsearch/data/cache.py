"""Packed uint8 caches of decoded datasets: built once, verified, then memory-mapped.

A cache is a directory under the cache root, named by a hash of (kind, resolved source,
options), holding ``train_images.npy``, ``train_labels.npy``, ``val_images.npy``,
``val_labels.npy`` and ``manifest.json``. It is trusted only when its manifest matches the
current options and the source's file fingerprint and a checksum of every array file
verifies, so a changed source or a damaged file means a rebuild, never silently wrong data.

It is written into a temporary sibling directory and renamed into place only when complete
(manifest last), so a preparation that is killed leaves nothing that is later trusted; on
POSIX an advisory lock lets parallel trials wait for one builder instead of all decoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dimsearch.errors import DataError

__all__ = [
    "ARRAYS",
    "CACHE_VERSION",
    "CacheWriter",
    "cache_path",
    "cached",
    "dir_bytes",
    "file_checksum",
    "manifest_checksum",
    "read_cache",
]

# Bump when what is stored for the same options changes (resize rule, layout, fields), so old
# caches are rebuilt instead of trusted.
CACHE_VERSION = 1
ARRAYS = ("train_images", "train_labels", "val_images", "val_labels")
MANIFEST = "manifest.json"
_HASH_BLOCK = 1 << 22


def file_checksum(path: Path) -> str:
    """blake2b of a file's bytes (hex); fast enough to verify a cache on every load."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def dir_bytes(path: Path) -> int:
    """Total size of the files directly in ``path``."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def cache_path(root: Path, kind: str, source: str, options: Mapping[str, Any]) -> Path:
    """Where the cache of (kind, source, options) lives; readable name, hashed identity."""
    key = json.dumps(
        {"kind": kind, "source": source, "options": dict(options), "version": CACHE_VERSION},
        sort_keys=True,
    )
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(source).name)
    return root / f"{kind}-{stem or 'root'}-{digest}"


def read_cache(
    path: Path, options: Mapping[str, Any], fingerprint: str
) -> tuple[dict[str, np.ndarray] | None, dict[str, Any], str]:
    """Open the cache at ``path`` if it can be trusted.

    Returns:
        (arrays, manifest, reason): the arrays (images memory-mapped read-only) and the
        manifest when everything matches; otherwise ``(None, {}, why it cannot be used)``.
    """
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        return None, {}, "no cache yet"
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError):
        return None, {}, "unreadable manifest"
    if not isinstance(manifest, dict):
        return None, {}, "unreadable manifest"
    if manifest.get("version") != CACHE_VERSION:
        return None, {}, f"cache format {manifest.get('version')} is not {CACHE_VERSION}"
    if manifest.get("options") != dict(options):
        return None, {}, "options changed"
    if manifest.get("fingerprint") != fingerprint:
        return None, {}, "source files changed"
    arrays: dict[str, np.ndarray] = {}
    for name in ARRAYS:
        file = path / f"{name}.npy"
        expected = manifest.get("arrays", {}).get(name, {}).get("blake2b")
        try:
            if file_checksum(file) != expected:
                return None, {}, f"checksum mismatch in {file.name}"
            arrays[name] = np.load(file, mmap_mode="r" if name.endswith("images") else None)
        except (OSError, ValueError):
            return None, {}, f"unreadable {file.name}"
    return arrays, manifest, "reused"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class CacheWriter:
    """Builds one cache in a temporary sibling directory; `commit` moves it into place.

    Use as a context manager: leaving it without `commit` (an error, Ctrl-C) deletes the
    temporary directory. Temporary directories of dead builders on this host are removed when
    a new writer starts.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        host = socket.gethostname().replace("-", "_")
        prefix = f".tmp-{path.name}-{host}-"
        for stale in path.parent.glob(prefix + "*"):
            pid = stale.name[len(prefix) :].split("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        self.tmp = path.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True)
        self._committed = False

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._committed:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def empty(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        """A writable array stored as ``name.npy``, to be filled in place (no second copy)."""
        return np.lib.format.open_memmap(self.tmp / f"{name}.npy", "w+", dtype, shape)

    def save(self, name: str, array: np.ndarray) -> None:
        """Store ``array`` as ``name.npy``, replacing one made with `empty`."""
        np.save(self.tmp / f"{name}.npy", np.ascontiguousarray(array))

    def keep_rows(self, name: str, rows: np.ndarray) -> None:
        """Rewrite ``name.npy`` keeping only ``rows`` (sorted), a slice at a time."""
        file, compact = self.tmp / f"{name}.npy", self.tmp / f"{name}.compact.npy"
        src = np.load(file, mmap_mode="r")
        dst = np.lib.format.open_memmap(compact, "w+", src.dtype, (len(rows), *src.shape[1:]))
        step = max(1, _HASH_BLOCK * 8 // max(1, src[:1].nbytes))
        for start in range(0, len(rows), step):
            dst[start : start + step] = src[rows[start : start + step]]
        dst.flush()
        del src, dst
        os.replace(compact, file)

    def commit(self, manifest: dict[str, Any]) -> None:
        """Checksum the arrays, write the manifest, then rename the directory into place."""
        arrays = {}
        for name in ARRAYS:
            file = self.tmp / f"{name}.npy"
            head = np.load(file, mmap_mode="r")
            arrays[name] = {
                "shape": list(head.shape),
                "dtype": str(head.dtype),
                "blake2b": file_checksum(file),
            }
            del head
        manifest = {**manifest, "version": CACHE_VERSION, "arrays": arrays}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for file in self.tmp.iterdir():  # durable before the rename makes it visible
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        old = None
        if self.path.exists():
            old = self.path.parent / f".old-{self.path.name}-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # open memory maps of it stay valid


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock for ``path`` (no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.parent / f".{path.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(
    root: Path,
    kind: str,
    source: str,
    options: Mapping[str, Any],
    fingerprint: str,
    build: Callable[[CacheWriter], dict[str, Any]],
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Reuse the cache of (kind, source, options) or build it with ``build(writer)``.

    ``build`` stores the four `ARRAYS` through the writer and returns manifest fields of its
    own (class names, statistics, skipped files).

    Returns:
        (arrays, manifest, info): the arrays read back from the cache, its manifest, and the
        ``cache_*`` entries of `ProxyData.info`.
    """
    path = cache_path(root, kind, source, options)
    arrays, manifest, reason = read_cache(path, options, fingerprint)
    reused = arrays is not None
    if not reused:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(
                f"cannot create the cache folder {root} ({err}); set data.cache_dir or "
                "$DIMSEARCH_CACHE to a writable folder"
            ) from None
        with _locked(path):
            arrays, manifest, _ = read_cache(path, options, fingerprint)  # built meanwhile?
            reused = arrays is not None
            if not reused:
                start = time.perf_counter()
                with CacheWriter(path) as writer:
                    extra = build(writer)
                    writer.commit(
                        {
                            **extra,
                            "kind": kind,
                            "source": source,
                            "options": dict(options),
                            "fingerprint": fingerprint,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "build_seconds": round(time.perf_counter() - start, 3),
                        }
                    )
                arrays, manifest, why = read_cache(path, options, fingerprint)
                if arrays is None:  # the disk lost what was just written
                    raise DataError(f"the cache just written to {path} does not verify ({why})")
    info = {
        "cache_path": str(path),
        "cache_bytes": dir_bytes(path),
        "cache_reused": reused,
        "cache_reason": "nothing changed" if reused else reason,
        "cache_checksum": manifest_checksum(manifest),
    }
    return arrays, manifest, info


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """One checksum of a verified cache's content: blake2b over its arrays' checksums, so two
    caches holding the same bytes agree wherever they were built (a study records it)."""
    arrays = manifest.get("arrays", {})
    parts = {name: arrays.get(name, {}).get("blake2b") for name in ARRAYS}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()
