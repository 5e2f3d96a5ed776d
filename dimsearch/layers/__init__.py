"""Layers: each knows its own shapes and nothing of configs, Optuna or the search.

They import torch alone: `dimsearch export` copies the source of the ones an architecture
uses into a standalone file, so these classes are what an exported model is made of.
"""

from dimsearch.layers.attention import Attention, EfficientAttention
from dimsearch.layers.block import Block, DropPath, Mlp, drop_path_rates
from dimsearch.layers.pos_embed import GroupLinearPos, LearnedPos, PixelAttentionPos
from dimsearch.layers.stage import Stage
from dimsearch.layers.stem import Conv3Stem, Conv7Stem, PatchStem
from dimsearch.layers.transition import ConvEmbed, DWConvPool, PoolProject, Transition

__all__ = [
    "Attention",
    "Block",
    "Conv3Stem",
    "Conv7Stem",
    "ConvEmbed",
    "DWConvPool",
    "DropPath",
    "EfficientAttention",
    "GroupLinearPos",
    "LearnedPos",
    "Mlp",
    "PatchStem",
    "PixelAttentionPos",
    "PoolProject",
    "Stage",
    "Transition",
    "drop_path_rates",
]
