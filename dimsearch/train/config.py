"""`TrainConfig`: how one proxy training is run (the space YAML's ``train:`` mapping).

The defaults are a short DeiT-style recipe scaled down for proxy runs: AdamW with decoupled
weight decay, a linear warm-up into a cosine decay, label smoothing, no mixup (it slows
convergence, which a 10-epoch proxy cannot afford) and gradient clipping (tiny datasets and
high learning rates make early spikes likely; a clipped step keeps the trial alive).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dimsearch._rules import Rule, Where, check_fields, check_section
from dimsearch.errors import TrainingError

__all__ = ["AMP_MODES", "AUGMENTS", "FIELD_RULES", "TrainConfig"]

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
        where = Where(path="train", raises=TrainingError)
        check_fields(self, FIELD_RULES, where)
        _check_between(dataclasses.asdict(self), where)

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
        at = Where(path=where, raises=TrainingError)
        unknown = "is not a training setting; known settings are {sorted}"
        given = check_section(data, at, FIELD_RULES, unknown)
        _check_between({**dataclasses.asdict(cls()), **given}, at)
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict that :meth:`from_dict` turns back into this config."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


# -- field rules ---------------------------------------------------------------------------------

# Bounds: a proxy training is minutes to hours, not a typo's 10**30 epochs. Each upper bound
# is far above any sensible setting, so it only ever catches a slip of the keyboard.
_MAX_EPOCHS = 1000
_SEED = Rule("int", low=0, high=2**32 - 1)  # numpy's seeds stop at 2**32 - 1
_NON_NEGATIVE = Rule("number", low=0, high=10)
_OFF_OR_ALPHA = Rule("number", low=0, high=10, text="a number in [0, 10] (0 = off)")

# The rule of every setting, in field order; messages read "train.<key> must be <expected>".
FIELD_RULES = {
    "epochs": Rule("int", low=1, high=_MAX_EPOCHS),
    "batch_size": Rule("int", low=1, high=65536),
    "lr": Rule("number", low=0, high=10, low_open=True),
    "weight_decay": _NON_NEGATIVE,
    "warmup_epochs": Rule("number", low=0, high=_MAX_EPOCHS),
    "min_lr": _NON_NEGATIVE,
    "label_smoothing": Rule("number", low=0, high=1, high_open=True),
    "mixup": _OFF_OR_ALPHA,
    "cutmix": _OFF_OR_ALPHA,
    "drop_path": Rule(
        "number", low=0, high=1, high_open=True, optional=True, text="null or in [0, 1)"
    ),
    "clip_grad": Rule("number", low=0, high=1e6, low_open=True, optional=True),
    "augment": Rule("choice", choices=AUGMENTS),
    "amp": Rule("choice", choices=AMP_MODES),
    "compile": Rule("bool"),
    "channels_last": Rule("bool"),
    "seed": _SEED,
    "num_threads": Rule("int", low=1, high=1024, optional=True),
}


def _check_between(values: Mapping[str, Any], where: Where) -> None:
    """The rules that tie two settings together (each setting is checked on its own first)."""
    prefix = where.path
    if values["min_lr"] > values["lr"]:
        raise Where(where.file, raises=where.raises).error(
            f"`{prefix}.min_lr <= {prefix}.lr` must hold, got min_lr={values['min_lr']}, "
            f"lr={values['lr']}"
        )
    mixes = values["mixup"] > 0 or values["cutmix"] > 0
    if mixes and values["batch_size"] % 2:
        raise (where / "batch_size").error(
            f"must be even when mixup or cutmix is on (timm mixes a batch "
            f"with its mirror image), got {values['batch_size']}"
        )
