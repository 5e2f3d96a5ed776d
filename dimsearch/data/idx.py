"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST), gzipped or not.

Expected in ``root``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz`` (the t10k set
is the val split). The default root is where Debian's ``dataset-fashion-mnist`` puts them.

Images stay grey: ``channels`` is 1 and models are built with ``in_chans=1``; replicating to
three channels would triple memory and host-to-device traffic for no information. They are
resized (bilinear, antialiased) when ``img_size`` is not the native 28, and cached like an
image folder so every trial memory-maps the same arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dimsearch.data._progress import progress_task
from dimsearch.data.cache import CacheWriter, cached
from dimsearch.data.config import DataConfig
from dimsearch.data.dataset import ProxyData, channel_stats
from dimsearch.errors import DataError

__all__ = [
    "DEFAULT_IDX_ROOT",
    "FASHION_MNIST_CLASSES",
    "IDX_FILES",
    "build_idx",
    "probe_idx",
    "read_idx",
]

DEFAULT_IDX_ROOT = "/usr/share/datasets/fashion-mnist"
# split -> (images file, labels file), without the optional ".gz"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = [
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one these datasets use
_RESIZE_CHUNK = 4096  # images resized per torch call


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions, as a uint8 array.

    Raises:
        DataError: unreadable, bad magic number (naming the file and the expected value),
            or a length that does not match the header.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from None
    expected = (_UBYTE << 8) | ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != expected:
        got = "a file shorter than 4 bytes" if magic is None else f"0x{magic:08x}"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {got}, "
            f"expected 0x{expected:08x}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} ends inside its header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise DataError(
            f"{path}: the header promises {dims} = {int(np.prod(dims))} bytes of data, the file "
            f"holds {data.size}"
        )
    return data.reshape(dims)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root} has no {name} or {name}.gz (an idx root needs {_expected_names()})")


def _expected_names() -> str:
    return ", ".join(f"{n}[.gz]" for pair in IDX_FILES.values() for n in pair)


def _root(cfg: DataConfig) -> Path:
    if cfg.root is not None:
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise DataError(f"idx root {root} is not a directory (expected {_expected_names()})")
        return root
    root = Path(DEFAULT_IDX_ROOT)
    if not root.is_dir():
        raise DataError(
            f"data.root is not set and the default idx root {root} does not exist; install "
            "Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set "
            f"data.root to a folder with {_expected_names()}"
        )
    return root


def _resize(images: np.ndarray, size: int, advance: Any) -> np.ndarray:
    """(N, h, w) uint8 -> (N, size, size) uint8, bilinear with antialiasing, in chunks."""
    import torch
    import torch.nn.functional as F

    out = np.empty((len(images), size, size), np.uint8)
    for start in range(0, len(images), _RESIZE_CHUNK):
        x = torch.from_numpy(images[start : start + _RESIZE_CHUNK]).float()[:, None]
        y = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + len(x)] = y[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
        advance(len(x))
    return out


def _cap(labels: np.ndarray, cap: int | None, seed: int, split_id: int) -> np.ndarray:
    """Indices keeping at most ``cap`` per class, drawn with ``seed``, in original order."""
    if cap is None:
        return np.arange(len(labels))
    keep = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) > cap:
            rng = np.random.default_rng([seed, split_id, int(label)])
            rows = rows[rng.choice(len(rows), cap, replace=False)]
        keep.append(rows)
    return np.sort(np.concatenate(keep))


def _header(path: Path, ndim: int) -> tuple[int, ...]:
    """The dimensions in an IDX file's header, reading only the header."""
    size = 4 + 4 * ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read(size)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from None
    expected = (_UBYTE << 8) | ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != expected or len(raw) < size:
        got = "a file shorter than its header" if len(raw) < size else f"0x{magic:08x}"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {got}, "
            f"expected 0x{expected:08x}"
        )
    return tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))


def probe_idx(cfg: DataConfig) -> int:
    """The number of classes `build_idx` would find: the label files read whole (a byte a
    label, 60 kB for Fashion-MNIST), the image files' headers only.

    Raises:
        DataError: a file missing or malformed, or images and labels that do not pair up.
    """
    root = _root(cfg)
    classes = 0
    for image_name, label_name in IDX_FILES.values():
        image_file, label_file = _find(root, image_name), _find(root, label_name)
        labels = read_idx(label_file, 1)
        count = _header(image_file, 3)[0]
        if count != len(labels) or count == 0:
            raise DataError(
                f"{image_file} holds {count} images but {label_file} holds "
                f"{len(labels)} labels; they must be equal and non-zero"
            )
        classes = max(classes, len(np.unique(labels)))
    return classes


def build_idx(cfg: DataConfig, progress: bool = False) -> ProxyData:
    """Read (or reuse the cache of) the IDX dataset in ``cfg.root``."""
    root = _root(cfg)
    files = {split: tuple(_find(root, n) for n in names) for split, names in IDX_FILES.items()}
    digest = hashlib.blake2b(digest_size=16)
    for path in (p for pair in files.values() for p in pair):
        st = path.stat()
        digest.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    options: dict[str, Any] = {
        "img_size": cfg.img_size,
        "train_per_class": cfg.train_per_class,
        "val_per_class": cfg.val_per_class,
    }
    if cfg.train_per_class is not None or cfg.val_per_class is not None:
        options["seed"] = cfg.seed

    def build(writer: CacheWriter) -> dict[str, Any]:
        counts, num_classes = {}, 0
        for split_id, (split, (image_file, label_file)) in enumerate(files.items()):
            images, labels = read_idx(image_file, 3), read_idx(label_file, 1).astype(np.int64)
            if len(images) != len(labels) or len(images) == 0:
                raise DataError(
                    f"{image_file} holds {len(images)} images but {label_file} holds "
                    f"{len(labels)} labels; they must be equal and non-zero"
                )
            cap = cfg.train_per_class if split == "train" else cfg.val_per_class
            keep = _cap(labels, cap, cfg.seed, split_id)
            images, labels = images[keep], labels[keep]
            if images.shape[1:] != (cfg.img_size, cfg.img_size):
                with progress_task(f"resizing {image_file.name}", len(images), progress) as adv:
                    images = _resize(images, cfg.img_size, adv)
            writer.save(f"{split}_images", images[..., None])
            writer.save(f"{split}_labels", labels)
            counts[split] = len(labels)
            num_classes = max(num_classes, int(labels.max()) + 1)
        mean, std = channel_stats(np.load(writer.tmp / "train_images.npy", mmap_mode="r"))
        fashion = "fashion" in root.name.lower() and num_classes == len(FASHION_MNIST_CLASSES)
        names = FASHION_MNIST_CLASSES if fashion else [str(i) for i in range(num_classes)]
        return {
            "class_names": names,
            "counts": counts,
            "mean": list(mean),
            "std": list(std),
            "skipped_count": 0,
            "skipped_first": [],
        }

    source = str(root.resolve())
    arrays, manifest, cache_info = cached(
        cfg.cache_root(), "idx", source, options, digest.hexdigest(), build
    )
    return ProxyData.from_cache(
        arrays,
        manifest,
        cache_info,
        name=f"{root.name}-{cfg.img_size}px",
        kind="idx",
        source=source,
        channels=1,
    )
