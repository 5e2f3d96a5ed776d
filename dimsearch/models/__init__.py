"""Model families built from an `ArchConfig` (one readable file per family)."""

from dimsearch.models.hvit import HViT, build_model

__all__ = ["HViT", "build_model"]
