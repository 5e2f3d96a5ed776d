"""ImageNet-layout folders, decoded once at proxy resolution into a packed uint8 cache.

Layout (per-class folders in both splits; a flat ``val/`` with a label file, as ImageNet
ships it, must be sorted into class folders first)::

    root/train/<class>/<image>    root/val/<class>/<image>

Proxy options, all deterministic given ``seed``: a class subset drawn from the sorted class
list (``num_classes``), per-class caps drawn from each sorted file list (``train_per_class``,
``val_per_class``), and the resolution ``img_size``. Each image is resized so its shorter side
is ``img_size`` and centre-cropped to a square (the usual evaluation transform; training
augmentation then crops and flips the stored square). JPEGs are decoded at a reduced scale
(``Image.draft``) when downscaling, which is most of the speed, in parallel worker processes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dimsearch.data._progress import progress_task
from dimsearch.data.cache import CacheWriter, cached
from dimsearch.data.config import DataConfig
from dimsearch.data.dataset import ProxyData, channel_stats
from dimsearch.errors import DataError

__all__ = [
    "IMG_EXTENSIONS",
    "LAYOUT",
    "build_imagefolder",
    "decode_image",
    "probe_imagefolder",
    "scan",
]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
LAYOUT = "root/train/<class>/<image> and root/val/<class>/<image>"
SPLITS = ("train", "val")
_CHUNK = 64  # files per worker task: large enough to amortise pickling, small for progress
_MIN_PARALLEL = 256  # fewer files are decoded in this process; starting workers costs more
_SKIPPED_SHOWN = 10  # skipped paths kept in the manifest and info


def decode_image(path: str, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3): shorter side to ``size``, centre square.

    Raises whatever PIL raises for an unreadable file (the callers count those as corrupt).
    """
    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still >= size
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        box = (left, top, left + side, top + side)
        return np.asarray(im.resize((size, size), Image.BILINEAR, box=box), dtype=np.uint8)


def _decode_chunk(paths: list[str], size: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode ``paths`` into one array; failures are (index, reason) and leave zeros."""
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_image(path, size)
        except Exception as err:  # PIL raises many types for bad files; each means "unreadable"
            failed.append((i, f"{type(err).__name__}: {err}"))
    return out, failed


def _corrupt_error(path: str, reason: str) -> DataError:
    return DataError(
        f"cannot decode image {path} ({reason}); data.on_corrupt is 'error', set it to "
        "'skip' to leave unreadable files out"
    )


def _decode_files(
    paths: list[str],
    size: int,
    out: np.ndarray,
    workers: int,
    advance: Callable[[int], None],
    stop_on_error: bool,
) -> list[tuple[int, str]]:
    """Decode ``paths`` into ``out`` (in order); returns the failures as (index, reason),
    sorted, so what is reported does not depend on which worker finished first."""
    chunks = [(s, paths[s : s + _CHUNK]) for s in range(0, len(paths), _CHUNK)]
    failures: list[tuple[int, str]] = []

    def take(start: int, result: tuple[np.ndarray, list[tuple[int, str]]]) -> None:
        array, failed = result
        out[start : start + len(array)] = array
        failures.extend((start + i, why) for i, why in failed)
        advance(len(array))
        if failures and stop_on_error:
            index, why = failures[0]
            raise _corrupt_error(paths[index], why)

    if workers <= 1 or len(paths) < _MIN_PARALLEL:
        for start, chunk in chunks:
            take(start, _decode_chunk(chunk, size))
        return sorted(failures)
    # fork where it exists, as torch's DataLoader does: workers only run PIL and numpy, and
    # forkserver/spawn would re-import the caller's main module, which breaks scripts without
    # a __main__ guard, stdin and notebooks
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        pending = {pool.submit(_decode_chunk, chunk, size): start for start, chunk in chunks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                take(pending.pop(future), future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(failures)


@dataclass
class Listing:
    """What `scan` found: the chosen classes and files, and a fingerprint of the source."""

    root: Path
    class_names: list[str]
    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # split -> (path, label)
    fingerprint: str = ""


def _list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(
            e.name for e in entries if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)
        )


def _classes(cfg: DataConfig) -> tuple[Path, list[str], list[int]]:
    """The root, every class folder of ``train/`` (sorted) and the indices ``cfg`` chooses;
    the layout checked on the way."""
    root = Path(cfg.root or "").expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder root {root} is not a directory (expected {LAYOUT})")
    for split in SPLITS:
        if not (root / split).is_dir():
            raise DataError(
                f"{root / split} not found: an imagefolder root needs train/ and val/, each "
                f"with one folder per class ({LAYOUT}); a flat val/ with a label file is not "
                "supported, sort it into class folders first"
            )
    train_dir = root / "train"
    with os.scandir(train_dir) as entries:
        all_classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not all_classes:
        raise DataError(f"{train_dir} holds no class folders (expected {LAYOUT})")
    chosen = list(range(len(all_classes)))
    if cfg.num_classes is not None:
        if cfg.num_classes > len(all_classes):
            raise DataError(
                f"data.num_classes is {cfg.num_classes} but {train_dir} has only "
                f"{len(all_classes)} class folders"
            )
        rng = np.random.default_rng([cfg.seed, 0])
        chosen = sorted(rng.choice(len(all_classes), cfg.num_classes, replace=False).tolist())
    return root, all_classes, chosen


def _class_images(root: Path, split: str, name: str) -> list[str]:
    """The image names of class ``name`` in ``split``; an error if it has none."""
    folder = root / split / name
    if not folder.is_dir():
        raise DataError(
            f"class {name!r} is in {root / 'train'} but {folder} is missing: every train "
            "class needs a folder in val/ too"
        )
    names = _list_images(folder)
    if not names:
        raise DataError(f"{folder} holds no images (looked for {', '.join(IMG_EXTENSIONS)})")
    return names


_PROBE_TRIES = 8  # images tried a split before "none decodes" (on_corrupt: skip)


def probe_imagefolder(cfg: DataConfig) -> int:
    """The number of classes `build_imagefolder` would find, from a listing of the class
    folders and one decoded image a split; no file is stat-ed or decoded beyond that.

    Raises:
        DataError: what `scan` raises for the layout, or the first image of a split does not
            decode (``on_corrupt: error``; with ``skip``, none of its first few does).
    """
    root, all_classes, chosen = _classes(cfg)
    for split in SPLITS:
        listed = {i: _class_images(root, split, all_classes[i]) for i in chosen}
        first = all_classes[chosen[0]]
        tries = 1 if cfg.on_corrupt == "error" else _PROBE_TRIES
        paths = [str(root / split / first / n) for n in listed[chosen[0]][:tries]]
        reasons = []
        for path in paths:
            try:
                decode_image(path, cfg.img_size)
                break
            except Exception as err:  # PIL raises many types for bad files
                reasons.append(f"{type(err).__name__}: {err}")
        else:
            if cfg.on_corrupt == "error":
                raise _corrupt_error(paths[0], reasons[0])
            raise DataError(
                f"none of the first {len(paths)} images of {root / split / first} decodes "
                f"({reasons[0]})"
            )
    return len(chosen)


def scan(cfg: DataConfig) -> Listing:
    """Check the layout and choose the classes and files ``cfg`` asks for.

    The fingerprint hashes every image name in the chosen class folders plus the size and
    modification time of every chosen file, so adding, removing or editing a file that
    matters invalidates the cache, while stat-ing only the files that are used.
    """
    root, all_classes, chosen = _classes(cfg)
    listing = Listing(root=root, class_names=[all_classes[i] for i in chosen])
    digest = hashlib.blake2b(digest_size=16)
    caps = {"train": cfg.train_per_class, "val": cfg.val_per_class}
    for split_id, split in enumerate(SPLITS):
        files: list[tuple[str, int]] = []
        for label, class_index in enumerate(chosen):
            name = all_classes[class_index]
            folder = root / split / name
            names = _class_images(root, split, name)
            digest.update("\n".join(f"{split}/{name}/{n}" for n in names).encode())
            cap = caps[split]
            if cap is not None and cap < len(names):
                rng = np.random.default_rng([cfg.seed, 1 + split_id, class_index])
                names = [names[i] for i in sorted(rng.choice(len(names), cap, replace=False))]
            for n in names:
                path = folder / n
                st = path.stat()
                digest.update(f"{n}:{st.st_size}:{st.st_mtime_ns}\n".encode())
                files.append((str(path), label))
        listing.files[split] = files
    listing.fingerprint = digest.hexdigest()
    return listing


def _workers(cfg: DataConfig) -> int:
    if cfg.workers is not None:
        return cfg.workers
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use, not the machine's
    except AttributeError:
        return os.cpu_count() or 1


def _builder(cfg: DataConfig, listing: Listing, progress: bool) -> Callable[[CacheWriter], dict]:
    """The function that decodes ``listing`` into a cache writer."""
    size = cfg.img_size

    def build(writer: CacheWriter) -> dict[str, Any]:
        skipped: list[tuple[str, str]] = []
        counts = {}
        total = sum(len(f) for f in listing.files.values())
        with progress_task(f"decoding {listing.root}", total, progress) as advance:
            for split in SPLITS:
                paths = [p for p, _ in listing.files[split]]
                labels = np.array([lab for _, lab in listing.files[split]], np.int64)
                images = writer.empty(f"{split}_images", (len(paths), size, size, 3), np.uint8)
                failed = _decode_files(
                    paths, size, images, _workers(cfg), advance, cfg.on_corrupt == "error"
                )
                images.flush()
                del images
                if failed:
                    keep = np.setdiff1d(np.arange(len(paths)), [i for i, _ in failed])
                    if keep.size == 0:
                        raise DataError(f"no image in {listing.root / split} could be decoded")
                    writer.keep_rows(f"{split}_images", keep)
                    labels = labels[keep]
                    skipped += [(paths[i], why) for i, why in failed]
                writer.save(f"{split}_labels", labels)
                counts[split] = len(labels)
        train_images = np.load(writer.tmp / "train_images.npy", mmap_mode="r")
        mean, std = channel_stats(train_images)
        return {
            "class_names": listing.class_names,
            "counts": counts,
            "mean": list(mean),
            "std": list(std),
            "skipped_count": len(skipped),
            "skipped_first": [{"path": p, "reason": why} for p, why in skipped[:_SKIPPED_SHOWN]],
        }

    return build


def _cache_options(cfg: DataConfig) -> dict[str, Any]:
    """What the cached arrays depend on (the seed only when it chooses something)."""
    options: dict[str, Any] = {
        "img_size": cfg.img_size,
        "num_classes": cfg.num_classes,
        "train_per_class": cfg.train_per_class,
        "val_per_class": cfg.val_per_class,
    }
    if any(v is not None for k, v in options.items() if k != "img_size"):
        options["seed"] = cfg.seed
    return options


def build_imagefolder(cfg: DataConfig, progress: bool = False) -> ProxyData:
    """Decode (or reuse the cache of) the image folder ``cfg.root`` at ``cfg.img_size``."""
    listing = scan(cfg)
    source = str(listing.root.resolve())
    arrays, manifest, cache_info = cached(
        cfg.cache_root(),
        "imagefolder",
        source,
        _cache_options(cfg),
        listing.fingerprint,
        _builder(cfg, listing, progress),
    )
    if cfg.on_corrupt == "error" and manifest["skipped_count"]:
        first = manifest["skipped_first"][0]
        raise _corrupt_error(first["path"], f"{first['reason']}, when the cache was built")
    return ProxyData.from_cache(
        arrays,
        manifest,
        cache_info,
        name=f"{listing.root.name}-{len(manifest['class_names'])}c-{cfg.img_size}px",
        kind="imagefolder",
        source=source,
        channels=3,
    )
