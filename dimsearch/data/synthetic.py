"""A built-in proxy dataset whose classes need shapes, textures *and* where they are.

Every image holds two textured parts on a noisy, shaded background. A part is a shape from
`SHAPES` filled with a texture from `TEXTURES`; a class is an ordered pair of parts plus an
`ARRANGEMENTS` entry, e.g. "flat disk left of striped square". Classes come in groups of
four that share the same two parts and differ only in arrangement (P left of Q, Q left of P,
P above Q, Q above P), and each part appears in several groups, so

* a position-free bag of features (or a colour histogram) cannot tell a group's classes
  apart: only the layout of the parts can, which is what positional encodings and the way
  tokens are pooled change;
* each part has its own hue (jittered per image), which makes *what* the parts are quick to
  learn even for a small transformer trained from scratch on a few thousand images, and
  leaves *where* they are as the hard part: classes that share parts share colours too, so
  colour never tells them apart. (With colours drawn independently of the parts, PiT-Ti
  stayed at chance for 8 epochs on 5000 images: a proxy that ranks nothing.)

Position, size, rotation, colours, texture phase and angle, the background's gradient and
noise are jittered per image. Everything is drawn from numpy generators seeded by
``(seed, split)``, so the same config gives bit-identical arrays, and rendering is vectorised
over a chunk of images at the target resolution (shapes are drawn from signed distances, so
edges are anti-aliased at any size).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from dimsearch.data._progress import progress_task
from dimsearch.data.config import SYNTHETIC_DEFAULTS, DataConfig
from dimsearch.data.dataset import ProxyData, Split, channel_stats
from dimsearch.errors import DataError

__all__ = [
    "ARRANGEMENTS",
    "DEFAULTS",
    "MAX_CLASSES",
    "SHAPES",
    "TEXTURES",
    "build_synthetic",
    "class_defs",
    "generate_split",
    "probe_synthetic",
]

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Signed distance (negative inside) in units of the part radius, in the part's own frame
# (u right, v down). Distances rather than masks, so edges can be anti-aliased.
_TRI_NORM = float(np.hypot(1.8, 1.0))
SHAPES: dict[str, Sdf] = {
    "disk": lambda u, v: np.hypot(u, v) - 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) - 0.85,
    "triangle": lambda u, v: np.maximum((1.8 * np.abs(u) - (v + 1.0)) / _TRI_NORM, v - 0.8),
    "cross": lambda u, v: np.minimum(
        np.maximum(np.abs(u) - 0.3, np.abs(v) - 1.0), np.maximum(np.abs(v) - 0.3, np.abs(u) - 1.0)
    ),
    "ring": lambda u, v: np.abs(np.hypot(u, v) - 0.775) - 0.225,
    "bar": lambda u, v: np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.35),
}

# Which of the part's two colours a pixel takes (0 or 1), from texture coordinates a, b
# measured in texture periods.
TEXTURES: dict[str, Sdf] = {
    "flat": lambda a, b: np.zeros_like(a),
    "stripes": lambda a, b: (a % 1.0 < 0.5).astype(a.dtype),
    "checker": lambda a, b: ((np.floor(a) + np.floor(b)) % 2.0).astype(a.dtype),
    "dots": lambda a, b: (((a % 1.0) - 0.5) ** 2 + ((b % 1.0) - 0.5) ** 2 < 0.09).astype(a.dtype),
}

_ADJECTIVES = {  # for class names
    "flat": "plain",
    "stripes": "striped",
    "checker": "checkered",
    "dots": "dotted",
}

# name -> axis: the first part of a class sits left of (0) or above (1) the second.
ARRANGEMENTS = {"left_of": 0, "above": 1}

# Parts: part k is shape k % 6 with texture (k % 6 + 3 * (k // 6)) % 4, a bijection onto all
# 24 (shape, texture) pairs that makes neighbouring parts differ in both.
_PARTS = [(list(SHAPES)[k % 6], list(TEXTURES)[(k % 6 + 3 * (k // 6)) % 4]) for k in range(24)]
# Unordered part pairs, all pairs of the first m parts before part m joins, so a small class
# count still reuses every part in several groups.
_PAIRS = [(i, j) for j in range(1, len(_PARTS)) for i in range(j)]
MAX_CLASSES = len(_PAIRS) * 2 * len(ARRANGEMENTS)

# Used when the config leaves them unset.
DEFAULTS = SYNTHETIC_DEFAULTS  # stated in the config, whose size rule needs them

# Geometry as fractions of the image side; two parts always fit side by side and their unit
# circles never overlap (a square or triangle corner, out to _EXTENT radii, may just touch).
_RADIUS = (0.13, 0.19)
_GAP = (0.04, 0.14)  # between the parts' bounding circles, along the arrangement axis
_SIDE_JITTER = 0.05  # each part's independent offset across the axis
_EXTENT = 1.3  # every shape lies within this many radii of its centre (triangle corners)
_ROTATION = 0.35  # radians, about 20 degrees: a bar stays a horizontal bar
_PERIOD = (0.09, 0.13)  # texture period; never below _MIN_PERIOD pixels
_MIN_PERIOD = 3.0
_NOISE = 0.04  # per-pixel Gaussian (grey) noise, [0, 1] units
_GRADIENT = 0.25  # largest background shading amplitude
_CHUNK_PIXELS = 1 << 18  # images per numpy pass = this / side**2; arrays stay in cache


def class_defs(num_classes: int) -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    """The first ``num_classes`` classes as (first part, second part, arrangement).

    A part is (shape, texture). Class ``4g + r`` of group ``g`` (parts P, Q) is: r=0 P left
    of Q, r=1 Q left of P, r=2 P above Q, r=3 Q above P.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise DataError(
            f"data.num_classes must be in [1, {MAX_CLASSES}] for kind 'synthetic' "
            f"({len(_PARTS)} parts, {len(ARRANGEMENTS)} arrangements), got {num_classes}"
        )
    defs = []
    for (i, j), arrangement in itertools.product(_PAIRS, ARRANGEMENTS):
        defs += [(_PARTS[i], _PARTS[j], arrangement), (_PARTS[j], _PARTS[i], arrangement)]
        if len(defs) >= num_classes:
            break
    return defs[:num_classes]


def _class_name(first: tuple[str, str], second: tuple[str, str], arrangement: str) -> str:
    """E.g. ``plain disk left of striped square``."""
    a, b = (f"{_ADJECTIVES[texture]} {shape}" for shape, texture in (first, second))
    return f"{a} {arrangement.replace('_', ' ')} {b}"


def _part_hues(part_ids: np.ndarray) -> np.ndarray:
    """A fixed, well-spread RGB colour per part (golden-ratio hue steps, bright and saturated)."""
    hue = (part_ids * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0  # HSV -> RGB, s=0.75, v=0.95
    return 0.95 - 0.95 * 0.75 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _draw_params(
    rng: np.random.Generator, arrangement: np.ndarray, size: int, part_ids: np.ndarray
) -> dict:
    """Every random choice of every image except pixel noise, drawn up front in one order.

    ``arrangement`` is each image's `ARRANGEMENTS` value and ``part_ids`` its two parts'
    indices into `_PARTS`; values are per image and per part (index 0: the first part, left
    or top).
    """
    n = len(arrangement)

    def u(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, size=(n, *shape))

    radius = u(*_RADIUS, 2) * size
    # Both parts always fit along the axis: 2 * 0.19 + 0.14 + 2 * 0.19 < 1 (see _RADIUS, _GAP).
    dist = radius.sum(1) + u(*_GAP) * size
    lo, hi = radius[:, 0], size - dist - radius[:, 1]
    along_first = lo + (hi - lo) * rng.uniform(size=n)
    along = np.stack([along_first, along_first + dist], 1)
    r_max = radius.max(1)
    across_base = r_max + (size - 2 * r_max) * rng.uniform(size=n)
    across = across_base[:, None] + u(-_SIDE_JITTER, _SIDE_JITTER, 2) * size
    across = np.clip(across, radius, size - radius)
    vertical = arrangement[:, None] == ARRANGEMENTS["above"]
    # a dark, greyish background under bright parts: contrast whatever the hues
    bg = u(0.05, 0.3, 1) + u(-0.05, 0.05, 3)
    colour1 = np.clip(_part_hues(part_ids) + u(-0.06, 0.06, 2, 3), 0.0, 1.0)
    colour2 = colour1 * u(0.35, 0.55, 2, 1)  # the texture's second colour: a darker shade
    return {
        "cx": np.where(vertical, across, along),
        "cy": np.where(vertical, along, across),
        "radius": radius,
        "rotation": u(-_ROTATION, _ROTATION, 2),
        "tex_angle": u(0.0, np.pi, 2),
        "period": np.maximum(u(*_PERIOD, 2) * size, _MIN_PERIOD),
        "phase": u(0.0, 1.0, 2, 2),
        "bg": bg,
        "colour1": colour1,
        "colour2": colour2,
        "grad_angle": u(0.0, 2 * np.pi),
        "grad_amp": u(0.0, _GRADIENT),
    }


def _render(
    p: dict, rows: np.ndarray, parts: tuple, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw images ``rows`` of the parameter set ``p`` as uint8 (n, size, size, 3).

    All ``rows`` are of one class, whose two (shape, texture) ``parts`` are given, so each
    part is one vectorised expression over the whole chunk, evaluated only in a square box
    around the part (a third of the image at the default radii).
    """
    f32 = np.float32
    pixels = np.arange(size, dtype=f32) + 0.5
    yy, xx = pixels[None, :, None], pixels[None, None, :]

    def col(key: str, part: int | None = None) -> np.ndarray:  # per-image values, broadcastable
        values = p[key][rows] if part is None else p[key][rows, part]
        return values.astype(f32)[:, None, None]

    ga = col("grad_angle")
    grad = (xx * np.cos(ga) + yy * np.sin(ga)) / size - 0.5
    img = (
        col("bg")
        + (col("grad_amp") * grad + rng.standard_normal(grad.shape, f32) * _NOISE)[..., None]
    )
    n, box = len(rows), min(size, int(np.ceil(2 * _EXTENT * _RADIUS[1] * size)) + 2)
    batch = np.arange(n)[:, None, None]
    for part, (shape, texture) in enumerate(parts):
        cx, cy = p["cx"][rows, part], p["cy"][rows, part]
        left = np.clip(np.round(cx - box / 2), 0, size - box).astype(np.int64)
        top = np.clip(np.round(cy - box / 2), 0, size - box).astype(np.int64)
        ys = top[:, None] + np.arange(box)  # (n, box) pixel rows of each image's box
        xs = left[:, None] + np.arange(box)
        dy = (ys.astype(f32) + 0.5 - cy[:, None].astype(f32))[:, :, None]  # (n, box, 1)
        dx = (xs.astype(f32) + 0.5 - cx[:, None].astype(f32))[:, None, :]  # (n, 1, box)
        rot, radius = col("rotation", part), col("radius", part)
        u = (dx * np.cos(rot) + dy * np.sin(rot)) / radius
        v = (dy * np.cos(rot) - dx * np.sin(rot)) / radius
        alpha = np.clip(0.5 - SHAPES[shape](u, v) * radius, 0.0, 1.0)  # 1-pixel soft edge
        c1, c2 = col("colour1", part), col("colour2", part)
        if texture == "flat":
            colour = c1
        else:
            ta, period, phase = col("tex_angle", part), col("period", part), col("phase", part)
            a = (dx * np.cos(ta) + dy * np.sin(ta)) / period + phase[..., 0]
            b = (dy * np.cos(ta) - dx * np.sin(ta)) / period + phase[..., 1]
            colour = c1 + TEXTURES[texture](a, b)[..., None] * (c2 - c1)
        where = (batch, ys[:, :, None], xs[:, None, :])
        region = img[where]
        img[where] = region + alpha[..., None] * (colour - region)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def generate_split(
    num_classes: int,
    per_class: int,
    size: int,
    seed: int,
    split: int,
    advance: Callable[[int], None] | None = None,
) -> Split:
    """Render one split: ``per_class`` images of each class, labels interleaved.

    Args:
        num_classes, per_class, size: what to make.
        seed, split: the generator's seed; splits use different ``split`` numbers so train and
            val never share an image.
        advance: called with the number of images finished, for a progress bar.
    """
    defs = class_defs(num_classes)
    labels = np.tile(np.arange(num_classes, dtype=np.int64), per_class)
    arrangement = np.array([ARRANGEMENTS[d[2]] for d in defs])[labels]
    part_ids = np.array([[_PARTS.index(d[0]), _PARTS.index(d[1])] for d in defs])[labels]
    params = _draw_params(np.random.default_rng([seed, split]), arrangement, size, part_ids)
    images = np.empty((len(labels), size, size, 3), np.uint8)
    step = max(1, _CHUNK_PIXELS // (size * size))
    for label, (first, second, _) in enumerate(defs):
        for start in range(0, per_class, step):
            rows = label + num_classes * np.arange(start, min(start + step, per_class))
            noise_rng = np.random.default_rng([seed, split, label, start, 1])
            images[rows] = _render(params, rows, (first, second), size, noise_rng)
            if advance is not None:
                advance(len(rows))
    return Split(images=images, labels=labels)


def probe_synthetic(cfg: DataConfig) -> int:
    """The class count of ``cfg``'s synthetic dataset (built in: only the count is checked)."""
    return len(class_defs(cfg.num_classes or DEFAULTS["num_classes"]))


def build_synthetic(cfg: DataConfig, progress: bool = False) -> ProxyData:
    """The synthetic dataset of ``cfg`` (not cached: generating it is as fast as reading it)."""
    num_classes = cfg.num_classes or DEFAULTS["num_classes"]
    n_train = cfg.train_per_class or DEFAULTS["train_per_class"]
    n_val = cfg.val_per_class or DEFAULTS["val_per_class"]
    defs = class_defs(num_classes)
    total = num_classes * (n_train + n_val)
    with progress_task("generating synthetic images", total, progress) as advance:
        train = generate_split(num_classes, n_train, cfg.img_size, cfg.seed, 0, advance)
        val = generate_split(num_classes, n_val, cfg.img_size, cfg.seed, 1, advance)
    mean, std = channel_stats(train.images)
    return ProxyData(
        name=f"synthetic-{num_classes}c-{cfg.img_size}px",
        train=train,
        val=val,
        num_classes=num_classes,
        img_size=cfg.img_size,
        channels=3,
        mean=mean,
        std=std,
        class_names=[_class_name(*d) for d in defs],
        info={
            "kind": "synthetic",
            "source": f"built in (seed {cfg.seed})",
            "train_count": len(train),
            "val_count": len(val),
            "skipped_count": 0,
            "skipped_first": [],
            "cache_path": None,
            "cache_bytes": None,
            "cache_reused": None,
            "cache_reason": None,
            "cache_checksum": None,
        },
    )
