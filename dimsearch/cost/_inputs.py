"""What the measuring functions share: the input size rule and the model's input channels."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["image_size", "in_chans"]


def image_size(img_size: int | tuple[int, int]) -> tuple[int, int]:
    """``img_size`` as (H, W); an int means a square image."""
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or not all(isinstance(n, int) and n >= 1 for n in size):
        raise ValueError(f"img_size must be a positive int or an (H, W) pair, got {img_size!r}")
    return size


def in_chans(model: nn.Module) -> int:
    """Input channels: the config's for our models, else the first conv's (timm-style models).

    Raises:
        ValueError: if neither exists, since an input cannot then be made up.
    """
    from torch import nn

    cfg = getattr(model, "cfg", None)
    if isinstance(getattr(cfg, "in_chans", None), int):
        return cfg.in_chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(
        f"cannot tell the input channels of {type(model).__name__}: it has no `cfg.in_chans` "
        f"and no Conv2d; pass in_chans explicitly"
    )
