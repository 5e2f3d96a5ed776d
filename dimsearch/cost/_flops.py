"""FLOPs of a built model, counted by tracing it with fvcore.

fvcore is the counter the PiT and ResT figures were measured with (see
``tests/data/reference_figures.json``), so our counts are comparable with the papers' tables.
It has one blind spot that matters here: it has no handle for
``aten::scaled_dot_product_attention`` and silently counts it as 0, which drops the attention
matmuls (PiT-Ti reads 0.50 G instead of 0.70 G). We register one.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import TYPE_CHECKING, Any

from dimsearch._values import is_int
from dimsearch.cost._inputs import image_size
from dimsearch.cost._inputs import in_chans as _model_in_chans

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FREE_OPS", "count_flops", "sdpa_flop_jit"]

# Ops fvcore has no handle for that we count as 0 on purpose, as fvcore's published figures
# do: elementwise arithmetic (residual and position adds, the attention scale, PA's sigmoid
# gate, the distilled head's average), activations, softmax, the GAP head's mean and pooling.
# Listing them only silences fvcore's "unsupported operator" warning; any other op without a
# handle (e.g. the bicubic resize of a learned position map at a new resolution) still warns,
# because it may hide real multiply-adds.
FREE_OPS = (
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::rsub",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::neg",
    "aten::gelu",
    "aten::silu",
    "aten::sigmoid",
    "aten::sigmoid_",
    "aten::tanh",
    "aten::softmax",
    "aten::mean",
    "aten::avg_pool2d",
    "aten::max_pool2d",
)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``.

    q (..., N, d), k (..., M, d), v (..., M, dv) cost ``N*M*d`` for ``q @ k^T`` plus
    ``N*M*dv`` for ``attn @ v`` per leading index, exactly what fvcore's matmul handle
    gives the explicit two-matmul form; the scale and softmax are free, as there.
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    rows = math.prod(q[:-1])  # batch * heads * N, broadcast over grouped k/v heads
    return rows * k[-2] * (q[-1] + v[-1])


def count_flops(
    model: nn.Module,
    img_size: int | tuple[int, int] = 224,
    *,
    batch_size: int = 1,
    by_module: bool = False,
    in_chans: int | None = None,
) -> int | dict[str, int]:
    """Count FLOPs (one multiply-add = one FLOP) of one forward pass with fvcore.

    The model is traced on a CPU copy in eval mode with a zero input of shape
    (batch_size, in_chans, H, W); the caller's model is left untouched. fvcore's default
    handles are kept (linear, matmul, conv without bias, LayerNorm 5 per element, eval
    BatchNorm 2, affine-free InstanceNorm 4) and scaled-dot-product attention is added.
    Deliberately not counted (0 FLOPs, no warning): the ops in `FREE_OPS` — elementwise
    add/sub/mul/div, GELU/SiLU/sigmoid/tanh, softmax, mean, avg/max pooling — plus those
    fvcore already ignores (ReLU, dropout, reshapes, cat). Unknown ops still warn.

    Args:
        model: any module taking one image batch.
        img_size: input size, ``int`` for square or ``(H, W)``.
        batch_size: images per forward; counts scale linearly with it.
        by_module: return ``{module name: flops}`` (``""`` is the whole model) instead of
            the total.
        in_chans: input channels; by default ``model.cfg.in_chans`` or the first conv's.

    Returns:
        The total FLOPs, or the per-module dict when ``by_module`` is set.
    """
    import torch

    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    h, w = image_size(img_size)
    channels = _model_in_chans(model) if in_chans is None else in_chans
    # a copy, so tracing hooks, eval mode and the device move never touch the caller's model
    clone = copy.deepcopy(model).cpu().eval()
    analysis = _analysis(clone, torch.zeros(batch_size, channels, h, w))
    with torch.no_grad():
        if by_module:
            return {name: int(n) for name, n in analysis.by_module().items()}
        return int(analysis.total())


def _analysis(model: nn.Module, x: Any) -> Any:
    with warnings.catch_warnings():
        # fvcore.nn's import scripts a focal loss, which torch now flags as deprecated
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    for op in FREE_OPS:
        analysis.set_op_handle(op, None)
    return analysis
