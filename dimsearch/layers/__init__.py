"""Layers: each knows its own shapes and nothing of configs, Optuna or the search."""

from dimsearch.layers.attention import KV_REDUCTIONS, Attention
from dimsearch.layers.block import Block
from dimsearch.layers.pos_embed import POS_ENCODINGS, create_pos
from dimsearch.layers.stem import STEMS, create_stem
from dimsearch.layers.transition import TRANSITIONS, create_transition

__all__ = [
    "KV_REDUCTIONS",
    "POS_ENCODINGS",
    "STEMS",
    "TRANSITIONS",
    "Attention",
    "Block",
    "create_pos",
    "create_stem",
    "create_transition",
]
