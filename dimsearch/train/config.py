"""`TrainConfig`: how one proxy training is run (the space YAML's ``train:`` mapping).

The defaults are a short DeiT-style recipe scaled down for proxy runs: AdamW with decoupled
weight decay, a linear warm-up into a cosine decay, label smoothing, no mixup (it slows
convergence, which a 10-epoch proxy cannot afford) and gradient clipping (tiny datasets and
high learning rates make early spikes likely; a clipped step keeps the trial alive).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dimsearch._values import is_int, is_number
from dimsearch.errors import TrainingError

__all__ = ["AMP_MODES", "AUGMENTS", "TrainConfig"]

AUGMENTS = ("crop_flip", "rrc_flip", "none")
AMP_MODES = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one proxy training run.

    Attributes:
        epochs: passes over the training split; the schedule spans exactly this many.
        batch_size: images per optimiser step (training and evaluation).
        lr: peak learning rate, used as given: it is *not* scaled by ``batch_size / 512``
            (the DeiT rule), so a trial's setting is the rate it trained with.
        weight_decay: AdamW's decoupled decay; biases, norms, position maps and class tokens
            are exempt (timm's ``filter_bias_and_bn`` plus the model's ``no_weight_decay()``).
        warmup_epochs: linear warm-up from ``min_lr`` to ``lr`` (may be fractional). It is
            capped at half the run so a one-epoch proxy still reaches its peak and decays.
        min_lr: floor of the cosine decay, reached at the last step.
        label_smoothing: for the training loss (the validation loss is plain cross-entropy).
        mixup, cutmix: Beta-distribution alphas of timm's ``Mixup``; 0 switches each off.
            With either on, ``batch_size`` must be even (timm mixes a batch with its mirror).
        drop_path: stochastic depth rate; overrides the architecture's ``drop_path_rate``
            when set, so one search can fix it for every sampled model.
        clip_grad: max global gradient norm; ``None`` disables clipping.
        augment: training augmentation done on the device by the data loader.
        amp: ``auto`` = bf16 autocast on CUDA and float32 on CPU (CPU bf16 is slow and would
            make CPU runs differ from the reference numbers); ``bf16`` or ``fp32`` force one.
        compile: ``torch.compile`` the model. CUDA only: ignored on CPU, where compiling
            costs more than a proxy run saves.
        channels_last: channels-last memory format for images and model (CUDA only; it helps
            the convolutional stem and transitions on tensor cores).
        seed: seeds weight init, augmentation, drop path and mixup; on CPU two runs with the
            same seed give identical curves.
        num_threads: CPU threads for this run (``torch.set_num_threads``, restored after);
            ``None`` keeps the process setting. Lets several CPU trials share a machine.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    drop_path: float | None = None
    clip_grad: float | None = 1.0
    augment: str = "crop_flip"
    amp: str = "auto"
    compile: bool = False
    channels_last: bool = False
    seed: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _validate(dataclasses.asdict(self), "train")

    @property
    def mixes(self) -> bool:
        """Whether mixup or cutmix is on (the loss then takes soft targets)."""
        return self.mixup > 0 or self.cutmix > 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "train") -> TrainConfig:
        """Build from a YAML mapping; omitted keys keep their defaults.

        Numbers written as strings are accepted for float settings because PyYAML reads
        ``1e-3`` (no dot) as a string.

        Raises:
            TrainingError: naming ``f"{where}.{key}"`` and what was expected, for an unknown
                key or a value of the wrong type or range.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise TrainingError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {f.name: f.default for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise TrainingError(
                    f"{where}.{key} is not a training setting; known settings are {sorted(known)}"
                )
        kwargs = {key: _coerce(key, value) for key, value in data.items()}
        _validate({**known, **kwargs}, where)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict that :meth:`from_dict` turns back into this config."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


# -- field rules ---------------------------------------------------------------------------------


# (test, what was expected) per setting; the message reads "train.<key> must be <expected>"
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "lr": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "warmup_epochs": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "min_lr": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "label_smoothing": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "mixup": (lambda v: is_number(v) and v >= 0, "a number >= 0 (0 = off)"),
    "cutmix": (lambda v: is_number(v) and v >= 0, "a number >= 0 (0 = off)"),
    "drop_path": (lambda v: v is None or (is_number(v) and 0 <= v < 1), "null or in [0, 1)"),
    "clip_grad": (lambda v: v is None or (is_number(v) and v > 0), "null or a number > 0"),
    "augment": (lambda v: v in AUGMENTS, f"one of {list(AUGMENTS)}"),
    "amp": (lambda v: v in AMP_MODES, f"one of {list(AMP_MODES)}"),
    "compile": (lambda v: isinstance(v, bool), "true or false"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "seed": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "num_threads": (lambda v: v is None or (is_int(v) and v >= 1), "null or a positive integer"),
}

_FLOATS = {"lr", "weight_decay", "warmup_epochs", "min_lr", "label_smoothing", "mixup", "cutmix"}
_FLOATS_OR_NONE = {"drop_path", "clip_grad"}


def _validate(values: Mapping[str, Any], where: str) -> None:
    """Check every setting, then the rules that tie two settings together."""
    for key, (test, expected) in _RULES.items():
        if not test(values[key]):
            raise TrainingError(f"{where}.{key} must be {expected}, got {values[key]!r}")
    if values["min_lr"] > values["lr"]:
        raise TrainingError(
            f"`{where}.min_lr <= {where}.lr` must hold, got min_lr={values['min_lr']}, "
            f"lr={values['lr']}"
        )
    mixes = values["mixup"] > 0 or values["cutmix"] > 0
    if mixes and values["batch_size"] % 2:
        raise TrainingError(
            f"{where}.batch_size must be even when mixup or cutmix is on (timm mixes a batch "
            f"with its mirror image), got {values['batch_size']}"
        )


def _coerce(key: str, value: Any) -> Any:
    """YAML-friendly conversions: ``"1e-3"`` and ``1`` become floats for float settings."""
    if key not in _FLOATS and not (key in _FLOATS_OR_NONE and value is not None):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # left for the rule to reject with the expected type
    if is_int(value):
        return float(value)
    return value
