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

from dimsearch._rules import Rule, Where, check_fields, check_section
from dimsearch.data.kinds import KINDS
from dimsearch.errors import DataError

__all__ = [
    "DEFAULT_CACHE_DIR",
    "FIELD_RULES",
    "KINDS",
    "ON_CORRUPT",
    "SYNTHETIC_DEFAULTS",
    "DataConfig",
    "default_cache_dir",
]

# Named choices; the kinds are the keys of `dimsearch.data.kinds.LOADERS`.
ON_CORRUPT = ("skip", "error")

# Where caches go when neither `cache_dir` nor $DIMSEARCH_CACHE says otherwise.
DEFAULT_CACHE_DIR = "~/.cache/dimsearch"

# Below this a patch-8 stem leaves no grid to search over; above it nothing is a "proxy".
_MIN_IMG_SIZE = 8
_MAX_IMG_SIZE = 1024

# Upper bounds no proxy dataset reaches (ImageNet-21k: 21,841 classes; ImageNet: ~1,300
# images per class): a larger value is a typo, refused before any memory is asked for.
_MAX_CLASSES = 100_000
_MAX_PER_CLASS = 1_000_000
_MAX_WORKERS = 1024
# A synthetic dataset is made in memory (uint8, 3 channels): at most this many bytes.
_MAX_SYNTHETIC_BYTES = 16 * 2**30
# What a synthetic dataset makes when a count is null (dimsearch.data.synthetic uses them).
SYNTHETIC_DEFAULTS = {"num_classes": 10, "train_per_class": 500, "val_per_class": 100}


def _positive_up_to(high: int) -> Rule:
    return Rule(
        "int", low=1, high=high, optional=True, text=f"a positive integer <= {high} or null"
    )


_PATH_OR_NULL = Rule("str", low=1, optional=True, text="a path string or null")

# The rule of every field, in field order (the order they are checked in).
FIELD_RULES = {
    "kind": Rule("choice", choices=KINDS),
    "img_size": Rule("int", low=_MIN_IMG_SIZE, high=_MAX_IMG_SIZE),
    "num_classes": Rule("int", low=2, high=_MAX_CLASSES, optional=True),
    "train_per_class": _positive_up_to(_MAX_PER_CLASS),
    "val_per_class": _positive_up_to(_MAX_PER_CLASS),
    "root": _PATH_OR_NULL,
    "cache_dir": _PATH_OR_NULL,
    "seed": Rule("int", low=0, high=2**32 - 1),  # numpy's seeds stop at 2**32 - 1
    "on_corrupt": Rule("choice", choices=ON_CORRUPT),
    "workers": _positive_up_to(_MAX_WORKERS),
}


def _check_between(values: Mapping[str, Any], where: Where) -> None:
    """The rules between fields (each field on its own is checked first)."""
    if values["kind"] == "imagefolder" and values["root"] is None:
        raise (where / "root").error(
            "is required for kind 'imagefolder': the folder holding "
            "train/<class>/* and val/<class>/*"
        )
    if values["kind"] == "synthetic":
        n = {k: values[k] or d for k, d in SYNTHETIC_DEFAULTS.items()}
        size = values["img_size"]
        need = n["num_classes"] * (n["train_per_class"] + n["val_per_class"]) * size * size * 3
        if need > _MAX_SYNTHETIC_BYTES:
            raise where.error(
                f"kind 'synthetic' is made in memory: {n['num_classes']} classes x "
                f"({n['train_per_class']} + {n['val_per_class']}) images of {size}x{size}x3 "
                f"bytes is {need / 2**30:,.0f} GiB, over the {_MAX_SYNTHETIC_BYTES // 2**30} GiB "
                "limit; expected fewer classes or images per class"
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
        where = Where(path="data", raises=DataError)
        check_fields(self, FIELD_RULES, where)
        _check_between(dataclasses.asdict(self), where)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "data") -> DataConfig:
        """Build from a YAML mapping (``None``: all defaults); errors name
        ``f"{where}.{key}"`` and what was expected.

        ``root`` and ``cache_dir`` may be given as `pathlib.Path` too; they are kept as strings
        so the config stays JSON-serialisable (it is stored with the study).
        """
        at = Where(path=where, raises=DataError)
        given = check_section(d, at, FIELD_RULES, "is not a data option; valid keys: {known}")
        _check_between({**dataclasses.asdict(cls()), **given}, at)
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain values; ``DataConfig.from_dict(cfg.to_dict()) == cfg``."""
        return dataclasses.asdict(self)

    def cache_root(self) -> Path:
        """The directory caches of this config live under (expanded, not created)."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
