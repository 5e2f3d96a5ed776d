"""Load published weights: map timm's and the official PiT / ResT key layouts onto ours.

Three layouts are understood (the family is recognised from the keys):

* ``timm`` PiT (``timm.models.pit``): ``transformers.{i}.pool.*`` holds the pooling that leads
  into stage ``i``;
* ``official`` PiT (naver-ai/pit): the same but pools live in ``pools.{i-1}.*``;
* ``official`` ResT v1 (wofmanaf/ResT): ``stem.*``, ``patch_embed_{2,3,4}.*``,
  ``stage{1..4}.{j}.*``, separate ``attn.q`` / ``attn.kv`` (fused into our ``attn.qkv`` where a
  stage has full attention, since the row layouts ``[q | k | v]`` line up).

The result loads with ``strict=True`` into ``build_model(cfg, num_classes, img_size)``; keys
or shapes that do not fit are a `ConversionError` that lists them, not a silent partial load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from dimsearch.config import ArchConfig
from dimsearch.errors import ArchError, ConversionError

__all__ = ["SOURCES", "convert_state_dict"]

SOURCES = ("timm", "official")

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rules(*pairs: tuple[str, Callable[[re.Match[str]], str]]) -> list[_Rule]:
    return [(re.compile(p), f) for p, f in pairs]


_PIT_COMMON = _rules(
    (r"^pos_embed$", lambda m: "stages.0.pos.pos_embed"),
    (r"^cls_token$", lambda m: "cls_token"),
    (r"^patch_embed\.conv\.(.+)$", lambda m: f"stem.conv.{m[1]}"),
    (r"^transformers\.(\d+)\.blocks\.(.+)$", lambda m: f"stages.{m[1]}.blocks.{m[2]}"),
    (r"^(norm|head|head_dist)\.(weight|bias)$", lambda m: f"{m[1]}.{m[2]}"),
)
_PIT_TIMM = _PIT_COMMON + _rules(
    (r"^transformers\.(\d+)\.pool\.(.+)$", lambda m: f"stages.{m[1]}.downsample.{m[2]}"),
)
_PIT_OFFICIAL = _PIT_COMMON + _rules(
    (r"^pools\.(\d+)\.(.+)$", lambda m: f"stages.{int(m[1]) + 1}.downsample.{m[2]}"),
)
_REST_OFFICIAL = _rules(
    (r"^stem\.pos\.(?:pa|gl)_conv\.(.+)$", lambda m: f"stages.0.pos.conv.{m[1]}"),
    (r"^stem\.(.+)$", lambda m: f"stem.{m[1]}"),
    (
        r"^patch_embed_(\d+)\.pos\.(?:pa|gl)_conv\.(.+)$",
        lambda m: f"stages.{int(m[1]) - 1}.pos.conv.{m[2]}",
    ),
    (r"^patch_embed_(\d+)\.(.+)$", lambda m: f"stages.{int(m[1]) - 1}.downsample.{m[2]}"),
    (r"^stage(\d+)\.(\d+)\.(.+)$", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}"),
    (r"^(norm|head)\.(weight|bias)$", lambda m: f"{m[1]}.{m[2]}"),
)


def _layout(keys: list[str], source: str) -> tuple[str, list[_Rule]]:
    if source not in SOURCES:
        raise ConversionError(f"source must be one of {list(SOURCES)}, got {source!r}")
    is_rest = any(k.startswith(("stage1.", "patch_embed_2.")) for k in keys)
    is_pit = any(k.startswith(("transformers.", "pools.")) for k in keys)
    if is_rest and source == "official":
        return "official ResT", _REST_OFFICIAL
    if is_pit and source == "timm":
        return "timm PiT", _PIT_TIMM
    if is_pit and source == "official":
        return "official PiT", _PIT_OFFICIAL
    family = "ResT" if is_rest else "PiT" if is_pit else "unknown"
    raise ConversionError(
        f"cannot read a {family} state dict as source={source!r}: timm has PiT only, "
        f"'official' covers naver-ai/pit and wofmanaf/ResT (first keys: {keys[:3]})"
    )


def _unwrap(state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a training checkpoint ({'model': ...} / {'state_dict': ...}),
    with or without DataParallel's ``module.`` prefix."""
    for key in ("model", "state_dict", "model_ema"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
            break
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def _fuse_qkv(out: dict[str, torch.Tensor], cfg: ArchConfig) -> None:
    """ResT keeps ``q`` and ``kv`` apart even without reduction; our full-attention stages use a
    fused ``qkv`` whose rows are ``[q | k | v]``, exactly ``cat(q, kv)``."""
    for i, stage in enumerate(cfg.stages):
        if stage.sr_ratio != 1:
            continue
        for j in range(stage.depth):
            base = f"stages.{i}.blocks.{j}.attn"
            for p in ("weight", "bias"):
                q, kv = out.pop(f"{base}.q.{p}", None), out.pop(f"{base}.kv.{p}", None)
                if q is not None and kv is not None:
                    out[f"{base}.qkv.{p}"] = torch.cat((q, kv), dim=0)
                elif q is not None or kv is not None:
                    raise ConversionError(f"{base}: found only one of q.{p} / kv.{p}")


def _fits(cfg: ArchConfig, img_size: int) -> bool:
    try:
        cfg.grids(img_size)
    except ArchError:
        return False
    return True


def _expected(cfg: ArchConfig, num_classes: int) -> dict[str, torch.Size]:
    from dimsearch.models import build_model  # lazy: keeps this module import-light

    # any resolution the geometry accepts will do: only shapes independent of it are checked
    img = next((s for s in (224, 448, 896, 1792) if _fits(cfg, s)), 224)
    with torch.device("meta"):
        model = build_model(cfg, num_classes=num_classes, img_size=img)
    return {k: v.shape for k, v in model.state_dict().items()}


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], cfg: ArchConfig, source: str = "timm"
) -> dict[str, torch.Tensor]:
    """Map a published state dict onto the key layout of ``build_model(cfg)``.

    Args:
        state_dict: weights in timm's PiT layout or the official PiT / ResT layout (a
            checkpoint dict with a ``model``/``state_dict`` entry is unwrapped).
        cfg: the architecture the weights are for (e.g. ``zoo.get("pit_s")``).
        source: ``"timm"`` or ``"official"``.

    Returns:
        A new dict that loads strictly into ``build_model(cfg, num_classes, img_size)``, with
        ``num_classes`` from the checkpoint's head and ``img_size`` the one the learned
        position map was trained at (it is resized at run time for other sizes).

    Raises:
        ConversionError: unknown layout, keys that map nowhere, or keys/shapes the model lacks.
    """
    sd = _unwrap(state_dict)
    layout, rules = _layout(list(sd), source)
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in sd.items():
        for pattern, target in rules:
            m = pattern.match(key)
            if m:
                out[target(m)] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ConversionError(f"{layout}: keys with no place in the model: {unmapped[:8]}")
    _fuse_qkv(out, cfg)

    head = out.get("head.weight")
    expected = _expected(cfg, head.shape[0] if head is not None else 0)
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    if missing or extra:
        raise ConversionError(
            f"{layout} weights do not fit this ArchConfig: missing {missing[:8]}, "
            f"unexpected {extra[:8]} (is cfg the right variant?)"
        )
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k])}"
        for k, v in out.items()
        if not k.endswith("pos_embed") and v.shape != expected[k]
    ]
    if wrong:
        raise ConversionError(f"{layout} weights have other shapes than the model: {wrong[:8]}")
    return out
