"""The tiny PiT-like space of the command-line tests: a 3-stage patch-stem family, the PiT-Ti
seed, synthetic 16 px data. One copy, so a rule change that breaks it breaks every user at
once; fill it with `tiny_space_text`."""

from __future__ import annotations

import textwrap

TINY = """
name: tiny
target_img_size: 64
num_classes: 10
arch:
  stages: 3
  stem: patch
  patch_size: 16
  heads: {choices: [1, 2]}
  head_dim: {choices: [16, 32]}
  head_mult: 2
  depth:
    - {choices: [1, 2]}
    - {choices: [1, 6]}
    - {choices: [1, 4]}
  sr: 1
  pool: {choices: [dwconv, avg, max]}
  pos: {choices: [le, pa]}
  pos_at: stem
  head: token
budgets: {max_gflops: 1.0}
seeds: [pit_ti]
objectives: [accuracy, gflops, latency_ms]
latency: {device: cpu, batch_size: 1, repeats: 2, warmup: 1}
data: {kind: synthetic, img_size: 16, num_classes: 4, train_per_class: 16, val_per_class: 8}
train: {epochs: %(epochs)d, batch_size: 16}
early_stopping: {kind: none}
sampler: {kind: tpe, seed: 0, n_startup_trials: 4}
search: {trials: %(trials)d, max_concurrent: %(concurrent)d}
resources: {cpus: 1, gpus: 0}
"""


def tiny_space_text(epochs: int = 2, trials: int = 2, concurrent: int = 2) -> str:
    """The tiny space as YAML text, with its training epochs, trials and parallel trials."""
    return textwrap.dedent(TINY % {"epochs": epochs, "trials": trials, "concurrent": concurrent})
