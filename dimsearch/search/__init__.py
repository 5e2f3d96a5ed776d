"""The search: a space file sampled by Optuna, trials proxy-trained through Ray Tune.

Public API::

    space = load_space("spaces/pit.yaml")      # validated SearchSpace (SpaceError otherwise)
    cfg = space.sample(trial)                  # Optuna trial -> ArchConfig
    space.params_of(zoo.get("pit_s"))          # ArchConfig -> the params that sample it
"""

from __future__ import annotations

from dimsearch.search.space import SearchSpace, load_space

__all__ = ["SearchSpace", "load_space"]
