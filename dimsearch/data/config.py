"""`DataConfig`: which proxy dataset a search trains on, built from a space's ``data:`` mapping.

The config is frozen and checked when made, so a typo in the YAML fails when the space loads,
not an hour into a search. Everything a cached dataset depends on is here; ``workers`` and
``on_corrupt`` only change how it is built, never what it holds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dimsearch._values import is_int
from dimsearch.data.kinds import KINDS
from dimsearch.errors import DataError

__all__ = ["DEFAULT_CACHE_DIR", "KINDS", "ON_CORRUPT", "DataConfig", "default_cache_dir"]

# Named choices; the kinds are the keys of `dimsearch.data.kinds.LOADERS`.
ON_CORRUPT = ("skip", "error")

# Where caches go when neither `cache_dir` nor $DIMSEARCH_CACHE says otherwise.
DEFAULT_CACHE_DIR = "~/.cache/dimsearch"

# Below this a patch-8 stem leaves no grid to search over; above it nothing is a "proxy".
_MIN_IMG_SIZE = 8
_MAX_IMG_SIZE = 1024

# field -> (kind of value, what the error message says was expected)
_FIELDS: dict[str, tuple[str, str]] = {
    "kind": ("choice", f"one of {list(KINDS)}"),
    "img_size": ("size", f"an integer in [{_MIN_IMG_SIZE}, {_MAX_IMG_SIZE}]"),
    "num_classes": ("positive?", "a positive integer or null"),
    "train_per_class": ("positive?", "a positive integer or null"),
    "val_per_class": ("positive?", "a positive integer or null"),
    "root": ("path?", "a path string or null"),
    "cache_dir": ("path?", "a path string or null"),
    "seed": ("seed", "a non-negative integer"),
    "on_corrupt": ("choice", f"one of {list(ON_CORRUPT)}"),
    "workers": ("positive?", "a positive integer or null"),
}
_CHOICES = {"kind": KINDS, "on_corrupt": ON_CORRUPT}


def _value_ok(name: str, value: Any) -> bool:
    rule = _FIELDS[name][0]
    if rule.endswith("?") and value is None:
        return True
    if rule == "choice":
        return isinstance(value, str) and value in _CHOICES[name]
    if rule == "size":
        return is_int(value) and _MIN_IMG_SIZE <= value <= _MAX_IMG_SIZE
    if rule == "positive?":
        return is_int(value) and value >= 1
    if rule == "path?":
        return isinstance(value, str) and value != ""
    if rule == "seed":
        return is_int(value) and value >= 0
    raise AssertionError(f"unknown rule {rule!r}")  # a bug in _FIELDS, not user input


def _check(where: str, name: str, value: Any) -> None:
    if not _value_ok(name, value):
        raise DataError(f"{where}.{name} must be {_FIELDS[name][1]}, got {value!r}")


def _check_all(where: str, values: Mapping[str, Any]) -> None:
    """Every field on its own, then the rules between fields."""
    for name, value in values.items():
        _check(where, name, value)
    if values["kind"] == "imagefolder" and values["root"] is None:
        raise DataError(
            f"{where}.root is required for kind 'imagefolder': the folder holding "
            "train/<class>/* and val/<class>/*"
        )


def default_cache_dir() -> Path:
    """``$DIMSEARCH_CACHE`` if set, else ``~/.cache/dimsearch`` (expanded, not created)."""
    return Path(os.environ.get("DIMSEARCH_CACHE") or DEFAULT_CACHE_DIR).expanduser()


@dataclass(frozen=True)
class DataConfig:
    """The proxy dataset of a search.

    Attributes:
        kind: ``synthetic`` (built in, nothing to download), ``imagefolder`` (ImageNet layout
            ``root/train/<class>/*`` and ``root/val/<class>/*``) or ``idx`` (MNIST-style IDX
            files, e.g. Fashion-MNIST).
        img_size: proxy resolution; images are stored at this size, square.
        num_classes: synthetic: how many classes to make (default 10); imagefolder: size of a
            class subset drawn with ``seed`` from the sorted class list (default all); idx:
            ignored (the labels decide).
        train_per_class, val_per_class: synthetic: images per class (defaults 500 / 100);
            imagefolder and idx: caps, the kept images drawn with ``seed`` (default all).
        root: imagefolder: the folder holding ``train/`` and ``val/``; idx: the folder with the
            IDX files (default ``/usr/share/datasets/fashion-mnist``, Debian's
            ``dataset-fashion-mnist``). Unused by synthetic.
        cache_dir: where decoded datasets are kept; default ``$DIMSEARCH_CACHE`` or
            ``~/.cache/dimsearch``.
        seed: picks synthetic images, class subsets and capped images; the same seed gives
            the same dataset.
        on_corrupt: an unreadable image is left out and reported (``skip``) or stops the
            preparation with an error naming it (``error``).
        workers: decoding processes (default: the CPUs this process may use).
    """

    kind: str = "synthetic"
    img_size: int = 32
    num_classes: int | None = None
    train_per_class: int | None = None
    val_per_class: int | None = None
    root: str | None = None
    cache_dir: str | None = None
    seed: int = 0
    on_corrupt: str = "skip"
    workers: int | None = None

    def __post_init__(self) -> None:
        _check_all("data", {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "data") -> DataConfig:
        """Build from a YAML mapping; errors name ``f"{where}.{key}"`` and what was expected.

        ``root`` and ``cache_dir`` may be given as `pathlib.Path` too; they are kept as strings
        so the config stays JSON-serialisable (it is stored with the study).
        """
        if not isinstance(d, Mapping):
            raise DataError(f"{where} must be a mapping of data options, got {d!r}")
        values = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key not in values:
                raise DataError(f"{where}.{key} is not a data option; valid keys: {list(values)}")
            if key in ("root", "cache_dir") and isinstance(value, os.PathLike):
                value = os.fspath(value)
            values[key] = value
        _check_all(where, values)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain values; ``DataConfig.from_dict(cfg.to_dict()) == cfg``."""
        return dataclasses.asdict(self)

    def cache_root(self) -> Path:
        """The directory caches of this config live under (expanded, not created)."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
