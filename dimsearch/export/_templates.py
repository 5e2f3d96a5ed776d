"""Layer classes that every export writes the same way, as source text.

`dimsearch.export.codegen` picks among these by the validated kind (only the stem and position
encodings the architecture uses are written) and generates the classes that depend on the
architecture (attention, block, stage, transitions, the model) itself. Each class mirrors its
counterpart in `dimsearch.layers` attribute for attribute, so state dict keys line up.
"""

from __future__ import annotations

__all__ = ["DROP_PATH", "GEOMETRY", "INIT", "MLP", "POS", "STEMS"]

GEOMETRY = '''
def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a conv or pool along one axis (PyTorch's floor rule)."""
    return (n + 2 * padding - kernel) // stride + 1
'''

DROP_PATH = '''
class DropPath(nn.Module):
    """Stochastic depth: while training, drop a sample's whole residual branch with prob. p."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0], *([1] * (x.ndim - 1)))).bernoulli_(keep)
        return x * mask / keep
'''

MLP = '''
class Mlp(nn.Module):
    """The feed-forward half of a block: Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
'''

STEMS = {
    "patch": '''
class PatchStem(nn.Module):
    """PiT's overlapping patch embedding: one strided conv."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, patch_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
''',
    "conv3": '''
class Conv3Stem(nn.Module):
    """ResT's stem: 3x3 convs with strides 2-1-2 and width dim/2, BN+ReLU after the first two."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        hidden = dim // 2
        self.conv1 = nn.Conv2d(in_chans, hidden, 3, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, dim, 3, stride=2, padding=1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.conv3(x)
''',
    "conv7": '''
class Conv7Stem(nn.Module):
    """ResNet-style stem (the ResT paper's): 7x7/2 conv, BN, ReLU, 3x3/2 max pool."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, 7, stride=2, padding=3, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))
''',
}

POS = {
    "le": '''
class LearnedPos(nn.Module):
    """A learned position map added to the grid; resized bicubically at other resolutions."""

    def __init__(self, dim: int, side: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, side, side))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.pos_embed
        if pos.shape[-2:] != x.shape[-2:]:
            pos = F.interpolate(pos, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return x + pos
''',
    "gl": '''
class GroupLinearPos(nn.Module):
    """ResT's group-linear position encoding: the grid plus a depthwise 3x3 conv of itself."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)
''',
    "pa": '''
class PixelAttentionPos(nn.Module):
    """ResT's pixel attention: each pixel gated by a sigmoid of a depthwise 3x3 conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))
''',
}

INIT = '''
def _init_weights(m: nn.Module) -> None:
    """Truncated-normal Linear weights, zero biases, unit norms (timm's ViT habit)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
'''
