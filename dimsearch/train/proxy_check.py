"""`proxy_check`: does the proxy rank published models the way ImageNet does?

A search is only as good as its proxy. This trains a few zoo fixed points (PiT and ResT, whose
ImageNet top-1 is published) under the proxy settings with several seeds and reports

* Kendall's tau between the mean proxy accuracy and the published top-1: near 1 the proxy
  orders models like ImageNet, near 0 its order is unrelated, below 0 it is reversed;
* the spread across seeds: differences between models smaller than it are noise.

The settings are a space's ``data`` / ``train`` (`dimsearch.search.load_space`) or given
directly; `default_data` is the dataset used when neither says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dimsearch.errors import TrainingError
from dimsearch.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from dimsearch.data import DataConfig, ProxyData
    from dimsearch.train.loop import TrainResult

__all__ = [
    "DEFAULT_IMG_SIZE",
    "DEFAULT_MODELS",
    "DEFAULT_SEEDS",
    "ModelCheck",
    "ProxyCheckResult",
    "default_data",
    "proxy_check",
]

# Two PiT and two ResT sizes plus PiT-Ti: both families, a spread of published accuracy
# (73.0 .. 80.9) and all cheap enough to proxy-train on one GPU in minutes.
DEFAULT_MODELS = ("pit_ti", "pit_xs", "pit_s", "rest_lite", "rest_small")
DEFAULT_SEEDS = (0, 1)
# ResT's head interaction normalises each head's attention map, which needs more than one
# token in the last stage: 32 px leaves ResT a 1x1 grid there, 48 px (the rest space's proxy
# size) a 2x2 one.
DEFAULT_IMG_SIZE = 48


@dataclass(frozen=True)
class ModelCheck:
    """One fixed point's proxy results.

    Attributes:
        name: zoo name.
        label: display label, e.g. ``PiT-Ti``.
        top1: published ImageNet top-1 (%), or None when the zoo has none.
        accs: final proxy accuracy (%) per seed, in seed order.
        mean: mean of ``accs``.
        spread: ``max(accs) - min(accs)`` in points (0 with one seed).
    """

    name: str
    label: str
    top1: float | None
    accs: tuple[float, ...]
    mean: float
    spread: float


@dataclass(frozen=True)
class ProxyCheckResult:
    """Outcome of a proxy check.

    Attributes:
        rows: one `ModelCheck` per model, in the order asked.
        seeds: the training seeds used.
        tau: Kendall's tau between mean proxy accuracy and published top-1 (models with a
            published figure only); None when undefined (fewer than two, or all tied).
        p_value: scipy's two-sided p-value for tau, or None.
        mean_spread, max_spread: across models, of the per-model seed spread (points).
        data_name: the proxy dataset's name.
        train: the training settings (seed aside) as a dict.
        seconds: wall time of the whole check.
    """

    rows: tuple[ModelCheck, ...]
    seeds: tuple[int, ...]
    tau: float | None
    p_value: float | None
    mean_spread: float
    max_spread: float
    data_name: str
    train: dict[str, Any]
    seconds: float

    def verdict(self) -> str:
        """Plain-language reading of tau and the seed spread."""
        return f"{_tau_sentence(self.tau, len(self.rows))} {self._spread_sentence()}"

    def _spread_sentence(self) -> str:
        if len(self.seeds) < 2:
            return "With one seed the noise between runs is unknown; use two or more seeds."
        return (
            f"Seeds differ by {self.mean_spread:.2f} points on average "
            f"(at most {self.max_spread:.2f}): models closer than that cannot be told apart "
            f"by this proxy."
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, verdict included."""
        d = dataclasses.asdict(self)
        d["rows"] = [dataclasses.asdict(r) for r in self.rows]
        d["verdict"] = self.verdict()
        return d


def default_data() -> DataConfig:
    """The proxy dataset of a check given no space: synthetic, at `DEFAULT_IMG_SIZE`."""
    from dimsearch.data import DataConfig

    return DataConfig(kind="synthetic", img_size=DEFAULT_IMG_SIZE)


def proxy_check(
    models: Sequence[str] = DEFAULT_MODELS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    data: DataConfig | ProxyData,
    train: TrainConfig,
    device: str | torch.device | None = None,
    on_run: Callable[[str, int, TrainResult], None] | None = None,
) -> ProxyCheckResult:
    """Proxy-train every model with every seed and compare the ranking with ImageNet's.

    The dataset is loaded once and shared by every run; only the training seed changes
    between seeds, so the spread measures the noise of training, not of the data.

    Args:
        models: zoo names.
        seeds: training seeds (replacing ``train.seed``).
        data: a `DataConfig` to load, or an already loaded `ProxyData`.
        train: training settings.
        device: where to train (default CUDA when available).
        on_run: called after each run with (model, seed, result), e.g. to print progress.

    Raises:
        TrainingError: no models or seeds, or a run failed (the message names it).
        ArchError: an unknown zoo name, or a model that does not fit the image size.
    """
    from dimsearch import zoo
    from dimsearch.data import DataConfig, load_data
    from dimsearch.train.loop import train_proxy

    if not models:
        raise TrainingError("proxy check needs at least one model, got none")
    if not seeds:
        raise TrainingError("proxy check needs at least one seed, got none")
    entries = [zoo.info(name) for name in models]  # unknown names fail before any training
    start = time.perf_counter()
    proxy = load_data(data) if isinstance(data, DataConfig) else data
    rows = []
    for entry in entries:
        accs = []
        for seed in seeds:
            try:
                result = train_proxy(entry.cfg, proxy, train.replace(seed=seed), device=device)
            except TrainingError as err:
                raise TrainingError(f"{entry.name} (seed {seed}): {err}") from None
            accs.append(result.final_acc)
            if on_run is not None:
                on_run(entry.name, seed, result)
        rows.append(_row(entry.name, entry.label, entry.top1, accs))
    tau, p = _kendall([r.mean for r in rows], [r.top1 for r in rows])
    spreads = [r.spread for r in rows]
    return ProxyCheckResult(
        rows=tuple(rows),
        seeds=tuple(seeds),
        tau=tau,
        p_value=p,
        mean_spread=sum(spreads) / len(spreads),
        max_spread=max(spreads),
        data_name=proxy.name,
        train={k: v for k, v in train.to_dict().items() if k != "seed"},
        seconds=time.perf_counter() - start,
    )


# -- pieces --------------------------------------------------------------------------------------


def _row(name: str, label: str, top1: float | None, accs: list[float]) -> ModelCheck:
    return ModelCheck(
        name=name,
        label=label,
        top1=top1,
        accs=tuple(accs),
        mean=sum(accs) / len(accs),
        spread=max(accs) - min(accs),
    )


def _kendall(means: list[float], top1: list[float | None]) -> tuple[float | None, float | None]:
    from scipy.stats import kendalltau

    pairs = [(m, t) for m, t in zip(means, top1, strict=True) if t is not None]
    if len(pairs) < 2:
        return None, None
    res = kendalltau([m for m, _ in pairs], [t for _, t in pairs])
    tau, p = float(res.statistic), float(res.pvalue)
    if math.isnan(tau):  # every proxy accuracy (or every top-1) tied
        return None, None
    return tau, p


def _tau_sentence(tau: float | None, n: int) -> str:
    if tau is None:
        return (
            "Kendall tau is undefined (fewer than two models with a published top-1, or all "
            "proxy accuracies tied), so the proxy's ranking cannot be compared with ImageNet's."
        )
    if tau >= 0.7:
        reading = "the proxy ranks these models much as ImageNet does"
    elif tau >= 0.3:
        reading = "the proxy partly agrees with ImageNet's ranking"
    elif tau > -0.3:
        reading = "the proxy's ranking is unrelated to ImageNet's"
    else:
        reading = "the proxy tends to reverse ImageNet's ranking"
    note = f" (with {n} models tau moves in steps of {4 / (n * (n - 1)):.2f})" if n > 1 else ""
    return f"Kendall tau = {tau:+.2f}: {reading}{note}."
