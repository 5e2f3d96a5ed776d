"""`ProxyData`, the one thing a proxy training needs from a dataset, whatever its kind.

Every kind of source ends as the same two `Split`s of packed uint8 arrays, channels last,
plus the per-channel statistics to normalise them; the trainer never learns where they came
from. Arrays may be read-only memory maps of a cache, so many trials share one copy in the
page cache instead of each decoding its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dimsearch.errors import DataError

__all__ = ["ProxyData", "Split", "channel_stats"]

# Pixels read at a time when computing statistics, so a memory-mapped cache is streamed.
_STATS_CHUNK_PIXELS = 1 << 24


@dataclass
class Split:
    """One split: ``images`` uint8 (N, H, W, C) channels last, ``labels`` int64 (N,).

    C is 3 for colour sources and 1 for IDX (grey) sources; models are built with
    ``in_chans=data.channels``. ``images`` may be a read-only `np.memmap`.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"Split.images must be uint8 (N, H, W, C), got {self.images.dtype} "
                f"{self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"Split.labels must have shape ({self.images.shape[0]},), got {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class ProxyData:
    """A prepared proxy dataset.

    Attributes:
        name: short label for logs and the study, e.g. ``synthetic-10c-32px``.
        train, val: the splits.
        num_classes: labels are ``0 .. num_classes-1``.
        img_size: H = W of every image.
        channels: C of every image (the model's ``in_chans``).
        mean, std: per channel, in [0, 1] units, over all train pixels.
        class_names: ``class_names[label]``.
        info: what preparation found, for people: ``kind``, ``source``, ``train_count``,
            ``val_count``, ``skipped_count``, ``skipped_first`` (a few paths),
            ``cache_path``, ``cache_bytes``, ``cache_reused``, ``cache_reason`` (why it was
            built), ``cache_checksum`` (of its content, `manifest_checksum`), ``seconds``;
            ``cache_*`` are None for sources that are not cached.
    """

    name: str
    train: Split
    val: Split
    num_classes: int
    img_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_cache(
        cls,
        arrays: dict[str, np.ndarray],
        manifest: dict[str, Any],
        cache_info: dict[str, Any],
        *,
        name: str,
        kind: str,
        source: str,
        channels: int,
    ) -> ProxyData:
        """The dataset held by a packed cache (`dimsearch.data.cache.cached`'s answer).

        The manifest supplies the class names, statistics and what was skipped when the
        cache was built (``skipped_first``: records with a ``path``), so a reused cache
        reports the same as a fresh one.
        """
        train = Split(arrays["train_images"], arrays["train_labels"])
        val = Split(arrays["val_images"], arrays["val_labels"])
        names = list(manifest["class_names"])
        return cls(
            name=name,
            train=train,
            val=val,
            num_classes=len(names),
            img_size=int(arrays["train_images"].shape[1]),
            channels=channels,
            mean=tuple(manifest["mean"]),
            std=tuple(manifest["std"]),
            class_names=names,
            info={
                "kind": kind,
                "source": source,
                "train_count": len(train),
                "val_count": len(val),
                "skipped_count": manifest["skipped_count"],
                "skipped_first": [s["path"] for s in manifest["skipped_first"]],
                **cache_info,
            },
        )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, in [0, 1] units.

    Computed from exact per-channel histograms, so the result does not depend on chunking and
    a large memory map is read once, a slice at a time.
    """
    n, h, w, c = images.shape
    if n == 0:
        raise DataError("cannot compute channel statistics of an empty split")
    hist = np.zeros((c, 256), dtype=np.int64)
    step = max(1, _STATS_CHUNK_PIXELS // (h * w * c))
    for start in range(0, n, step):
        chunk = np.asarray(images[start : start + step]).reshape(-1, c)
        for ch in range(c):
            hist[ch] += np.bincount(chunk[:, ch], minlength=256)
    levels = np.arange(256, dtype=np.float64)
    count = n * h * w
    mean = hist @ levels / count
    var = np.maximum(hist @ (levels * levels) / count - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var), 1.0)  # a constant channel must not divide by zero
    return tuple(float(m / 255) for m in mean), tuple(float(s / 255) for s in std)
