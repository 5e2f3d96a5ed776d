"""`DeviceLoader`: batches straight from a split held on the accelerator.

Proxy training runs many short trainings on small images, where a `DataLoader`'s per-image
Python work and worker processes cost more than the model. Here the whole uint8 split is
copied to the device once (a 50k x 32 x 32 x 3 split is 150 MB); each epoch is one
`torch.randperm` and every batch is a gather plus batched augmentation with tensor ops, on
the device. When the split does not fit in the GPU memory this process may use (see
`gpu_budget`) it stays in pinned host memory and each batch is gathered there and copied
with ``non_blocking``.

Augmentations (`AUGMENTS`), applied to training batches only:

* ``crop_flip``: CIFAR-style random crop with padding ``img_size // 8`` (4 at 32 px) by
  reflection (no black borders to learn), then a horizontal flip with probability 1/2; one
  gather on the uint8 batch does both.
* ``rrc_flip``: random-resized crop, a per-sample box of area fraction `RRC_SCALE` and aspect
  `RRC_RATIO` resampled bilinearly to the full size with one ``F.affine_grid`` +
  ``F.grid_sample`` for the batch, flips folded into the same affine map.
* ``none``: normalisation only.

Randomness comes from one `torch.Generator` seeded from (seed, epoch), so on CPU the same seed
and epoch give the same order and the same augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dimsearch._values import is_int
from dimsearch.data.dataset import Split
from dimsearch.errors import DataError

__all__ = ["AUGMENTS", "RRC_RATIO", "RRC_SCALE", "DeviceLoader", "gpu_budget"]

# timm's default smallest area (0.08) often crops both parts of a 32 px image away.
RRC_SCALE = (0.25, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
# Share of free GPU memory a resident split may take; the rest is the model's.
_GPU_SHARE = 0.5
# Bytes copied per step when moving a (possibly memory-mapped) split to its place.
_COPY_BYTES = 1 << 26

Augment = Callable[[torch.Tensor, "_Random", Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]


class _Random:
    """Draws from one generator on the data's device and hands them to the batch's device."""

    def __init__(self, gen: torch.Generator, device: torch.device) -> None:
        self.gen, self.device = gen, device

    def uniform(self, n: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        u = torch.rand(n, generator=self.gen, device=self.gen.device)
        return (lo + (hi - lo) * u).to(self.device, non_blocking=True)

    def integers(self, n: int, low: int, high: int) -> torch.Tensor:
        r = torch.randint(low, high, (n,), generator=self.gen, device=self.gen.device)
        return r.to(self.device, non_blocking=True)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index ``i`` in [-(n-1), 2(n-1)] mirrored into [0, n-1] (edge pixel not repeated)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def _none(x: torch.Tensor, rnd: _Random, normalize: Callable) -> torch.Tensor:
    return normalize(x)


def _crop_flip(x: torch.Tensor, rnd: _Random, normalize: Callable) -> torch.Tensor:
    b, h, w, _ = x.shape
    pad = max(1, h // 8)
    dy, dx = rnd.integers(b, -pad, pad + 1), rnd.integers(b, -pad, pad + 1)
    flip = rnd.uniform(b) < 0.5
    rows = _reflect(torch.arange(h, device=x.device) + dy[:, None], h)  # (B, H)
    cols = _reflect(torch.arange(w, device=x.device) + dx[:, None], w)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return normalize(x[batch, rows[:, :, None], cols[:, None, :]])


def _rrc_flip(x: torch.Tensor, rnd: _Random, normalize: Callable) -> torch.Tensor:
    b = x.shape[0]
    area = rnd.uniform(b, *RRC_SCALE)
    ratio = torch.exp(rnd.uniform(b, math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])))
    box_w = torch.sqrt(area * ratio).clamp(max=1.0)  # box sides as fractions of the image's
    box_h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (2 * rnd.uniform(b) - 1) * (1 - box_w)  # centre in [-1, 1] units, box kept inside
    cy = (2 * rnd.uniform(b) - 1) * (1 - box_h)
    sign = torch.where(rnd.uniform(b) < 0.5, -1.0, 1.0)  # -1: mirror the x axis (flip)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = box_w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = box_h, cy
    z = normalize(x).contiguous()  # normalising first is exact: both maps are affine
    grid = F.affine_grid(theta, list(z.shape), align_corners=False)
    return F.grid_sample(z, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


AUGMENTS: dict[str, Augment] = {"none": _none, "crop_flip": _crop_flip, "rrc_flip": _rrc_flip}


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch), so nearby pairs give unrelated streams."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def _place(array: np.ndarray, device: torch.device, pinned: bool = False) -> torch.Tensor:
    """Copy ``array`` (possibly a read-only memmap) to ``device`` a slice at a time."""
    dtype = torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype
    out = torch.empty(array.shape, dtype=dtype, device=device, pin_memory=pinned)
    row = max(1, array[:1].nbytes)
    step = max(1, _COPY_BYTES // row)
    for start in range(0, len(array), step):
        out[start : start + step] = torch.from_numpy(np.array(array[start : start + step]))
    return out


class DeviceLoader:
    """Iterate a `Split` as normalised float batches on ``device``.

    Args:
        split: uint8 (N, H, W, C) images and int64 labels.
        batch_size: images per batch.
        device: where batches are produced (``"cpu"``, ``"cuda"``, ...).
        train: shuffle and augment (training) or keep order and only normalise (evaluation).
        mean, std: per channel, in [0, 1] units (`ProxyData.mean` / `std`).
        augment: a name in `AUGMENTS`; ignored when ``train`` is false.
        seed: with the epoch, fixes the order and the augmentation.
        drop_last: drop a final short batch (default: when training, so batch statistics
            never come from a handful of images); never drops the only batch.
        channels_last: batches in ``torch.channels_last`` memory format.

    Iterating yields ``(images, labels)``: float32 (B, C, H, W) and int64 (B,), on ``device``.
    Each iteration uses the epoch set by `set_epoch`, then moves on to the next, so a loop
    that never calls `set_epoch` still sees a new order every epoch.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: str | torch.device,
        *,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        augment: str = "crop_flip",
        seed: int = 0,
        drop_last: bool | None = None,
        channels_last: bool = False,
    ) -> None:
        if augment not in AUGMENTS:
            raise DataError(f"augment must be one of {list(AUGMENTS)}, got {augment!r}")
        if not is_int(batch_size) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(split) == 0:
            raise DataError("cannot iterate an empty split")
        channels = split.images.shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values, got {len(mean)}, {len(std)}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment if train else "none"
        self.seed = seed
        self.drop_last = train if drop_last is None else drop_last
        self.channels_last = channels_last
        self.num_samples = len(split)
        self.resident = self.device.type != "cuda" or _fits_on_gpu(self.device, split)
        data_device = self.device if self.resident else torch.device("cpu")
        pinned = not self.resident
        self.images = _place(split.images, data_device, pinned)
        self.labels = _place(split.labels.astype(np.int64, copy=False), data_device, pinned)
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t
        self._epoch = 0

    def __len__(self) -> int:
        n, bs = self.num_samples, self.batch_size
        return n // bs if self.drop_last and n >= bs else -(-n // bs)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration: same seed and epoch, same batches."""
        self._epoch = epoch

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) -> normalised float32 (B, C, H, W), channels-last strides."""
        return x.permute(0, 3, 1, 2).float() * self._scale + self._shift

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        data_device = self.images.device
        gen = torch.Generator(device=data_device)
        gen.manual_seed(_epoch_seed(self.seed, epoch))
        n = self.num_samples
        if self.train:
            order = torch.randperm(n, generator=gen, device=data_device)
        else:
            order = torch.arange(n, device=data_device)
        rnd = _Random(gen, self.device)
        augment = AUGMENTS[self.augment]
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if not self.resident:
                x = x.pin_memory().to(self.device, non_blocking=True)
                y = y.pin_memory().to(self.device, non_blocking=True)
            yield augment(x, rnd, self._normalize).contiguous(memory_format=fmt), y


def _fits_on_gpu(device: torch.device, split: Split) -> bool:
    free, total = torch.cuda.mem_get_info(device)
    budget = gpu_budget(
        free,
        total,
        fraction=torch.cuda.get_per_process_memory_fraction(device),
        reserved=torch.cuda.memory_reserved(device),
    )
    return split.images.nbytes + split.labels.nbytes <= budget


def gpu_budget(free: int, total: int, *, fraction: float, reserved: int) -> float:
    """Bytes a resident split may take on a GPU: `_GPU_SHARE` of what this process can still
    allocate. That is the device's free memory, but also no more than its per-process
    fraction of the total minus what its caching allocator already holds: trials sharing a
    GPU through Ray (``resources.gpus: 0.25``) each get such a fraction, and the free memory
    of the whole device would overstate theirs."""
    own = fraction * total - reserved
    return _GPU_SHARE * max(0.0, min(float(free), own))
