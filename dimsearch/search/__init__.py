"""The search: a space file sampled by Optuna, trials proxy-trained through Ray Tune.

Public API::

    space = load_space("spaces/pit.yaml")      # validated SearchSpace (SpaceError otherwise)
    space_from_dict(study_attrs["space"])      # the same from a mapping (what a study stores)
    cfg = space.sample(trial)                  # Optuna trial -> ArchConfig
    space.params_of(zoo.get("pit_s"))          # ArchConfig -> the params that sample it
"""

from __future__ import annotations

from dimsearch.search.loader import load_space, space_from_dict
from dimsearch.search.space import SearchSpace

__all__ = ["SearchSpace", "load_space", "space_from_dict"]
