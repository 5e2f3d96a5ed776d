"""Model families built from an `ArchConfig` (one readable file per family)."""

from dimsearch.models.hvit import HViT, build_model, model_call

__all__ = ["HViT", "build_model", "model_call"]
