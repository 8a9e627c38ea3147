"""The data on the training device: per-batch normalization and augmentation (random crop
and flip) of uint8 images kept on the device (the airbench recipe: Jordan, *94% on CIFAR-10 in
3.29 seconds on a single GPU*, 2024), the seeded per-epoch order, and the one evaluation
function of genzoo."""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from trainers.data.sources import AUGMENT_PADDING, CPU_PASS_LIMIT, EVAL_BATCH_SIZE, DatasetError, _generator


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``N×C×H×W`` -> float32 ``(x / 255 - mean[c]) / std[c]`` on the images' device."""
    if images.dim() != 4 or images.shape[1] != len(mean) or len(mean) != len(std):
        raise DatasetError(f"images: got shape {tuple(images.shape)}, allowed: N×{len(mean)}×H×W")
    return _normalize(images, *_channel_tensors(mean, std, images.device))


def _channel_tensors(mean: Sequence[float], std: Sequence[float], device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    # Built once per loader: a host-to-device copy per batch would stall the GPU stream.
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return mean_t, std_t


def _normalize(images: torch.Tensor, mean_t: torch.Tensor, std_t: torch.Tensor) -> torch.Tensor:
    return (images.to(torch.float32) / 255.0 - mean_t) / std_t


def crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int = AUGMENT_PADDING) -> torch.Tensor:
    """Per-example random crop with zero padding, then horizontal flip, as one gather.

    Example ``i`` is padded with ``padding`` zeros on every side (black, in uint8 pixel
    space, as torchvision's ``RandomCrop(32, padding=4)`` does before normalization), the
    ``H×W`` window at row ``dy[i]``, column ``dx[i]`` (each in ``0..2*padding``) is cut out
    and mirrored left-right when ``flip[i]``. Offsets and flips must be on the images'
    device; works for any dtype.
    """
    n, channels, height, width = images.shape
    device = images.device
    padded = images.new_zeros((n, channels, height + 2 * padding, width + 2 * padding))
    padded[:, :, padding:padding + height, padding:padding + width] = images
    rows = dy[:, None] + torch.arange(height, device=device)  # n×H
    forward = torch.arange(width, device=device)
    cols = dx[:, None] + torch.where(flip[:, None], width - 1 - forward, forward)  # n×W
    return padded[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


class EpochPlan(NamedTuple):
    """An epoch's random draws, on the CPU: example order, then per position crop offsets
    and flips (``None`` without augmentation)."""

    order: torch.Tensor
    dy: Optional[torch.Tensor]
    dx: Optional[torch.Tensor]
    flip: Optional[torch.Tensor]


class DeviceLoader:
    """Mini-batches from a dataset held once on ``device`` (airbench style).

    ``batches(epoch)`` depends only on ``(seed, epoch)``: the permutation, crop offsets and
    flips come from a CPU generator seeded with ``derive_seed(seed, "loader", epoch)``, so
    epoch k is the same whether training ran straight through or was resumed, and on every
    device. Augmentation (``augment=True``): random 32×32 crop of the image zero-padded by
    ``padding`` pixels (``AUGMENT_PADDING`` = 4 by default, the CIFAR recipe), then (``flip=True``) a horizontal flip with probability
    0.5, per example, vectorized on the device (:func:`crop_flip`); ``flip=False`` keeps the
    crops (the same offsets) and never mirrors, for classes that are not mirror-symmetric
    (digits). ``device=None`` keeps the images where
    they are. ``images`` (uint8) and ``labels`` (int64) are the on-device copies.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool,
        flip: bool = True,
        padding: int = AUGMENT_PADDING,
        shuffle: bool = True,
        seed: int = 0,
        device: Optional[Union[torch.device, str]] = None,
        drop_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DatasetError(f"images: got {images.dtype} of shape {tuple(images.shape)}, allowed: uint8 N×C×H×W")
        if labels.shape != (images.shape[0],):
            raise DatasetError(f"labels: got shape {tuple(labels.shape)}, allowed: ({images.shape[0]},) like images")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatasetError(f"batch_size: got {batch_size!r}, allowed: a positive integer")
        if drop_last and batch_size > images.shape[0]:
            raise DatasetError(
                f"batch_size: got {batch_size} with drop_last=True, allowed: at most the {images.shape[0]} examples"
            )
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self.batch_size = batch_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != images.shape[1] or len(self.std) != images.shape[1]:
            raise DatasetError(f"mean/std: got {len(self.mean)} and {len(self.std)} values, allowed: one per channel")
        self._channel_tensors = _channel_tensors(self.mean, self.std, self.device)
        self.augment = augment
        self.flip = flip
        self.padding = padding
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch_plan(self, epoch: int) -> EpochPlan:
        """The random draws of epoch ``epoch``, in a fixed order: permutation, dy, dx, flip."""
        n = self.images.shape[0]
        generator = _generator(self.seed, "loader", epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if not self.augment:
            return EpochPlan(order, None, None, None)
        span = 2 * self.padding + 1
        dy = torch.randint(0, span, (n,), generator=generator)
        dx = torch.randint(0, span, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        if not self.flip:
            # Drawn all the same, so that the crops are those of the flipping loader.
            flip = torch.zeros_like(flip)
        return EpochPlan(order, dy, dx, flip)

    def batches(self, epoch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` for epoch ``epoch``: x float32 normalized, y int64, both on the device."""
        plan = EpochPlan(*(t.to(self.device) if t is not None else None for t in self.epoch_plan(epoch)))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = plan.order[start:start + self.batch_size]
            images = self.images[index]
            if self.augment:
                window = slice(start, start + len(index))
                images = crop_flip(images, plan.dy[window], plan.dx[window], plan.flip[window], self.padding)
            yield _normalize(images, *self._channel_tensors), self.labels[index]

    def eval_batches(self, batch_size: int = EVAL_BATCH_SIZE) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """All examples in their stored order, normalized, never augmented."""
        for start in range(0, self.images.shape[0], batch_size):
            images = self.images[start:start + batch_size]
            yield _normalize(images, *self._channel_tensors), self.labels[start:start + batch_size]


def examples_per_pass(batch_size: int, device: Union[torch.device, str]) -> int:
    """How many examples one forward pass of an evaluation takes on ``device``:
    ``batch_size``, but at most :data:`CPU_PASS_LIMIT` (256) on the CPU.

    For evaluation-only passes (eval mode, every example independent of the others) the
    split of a batch changes nothing but float rounding. The large batches that keep a GPU
    busy are slow on the CPU: a NiN-16 evaluates its 1,437 training digits, and runs a
    Hessian-vector product over them, about twice as slowly in passes of 1,024 as of 256
    under glibc's default allocator thresholds, which return the large activation buffers to
    the operating system after each pass and fault them in again at the next
    (bench/README.md, "cpu_passes.py"). ``trainers.allocator`` now fixes those thresholds
    where the C library is glibc; the cap stays, for every other allocator, and because 256
    was still the fastest pass size with the thresholds fixed (256, 128, 64, 32 measured).
    Recalibrating BatchNorm is not an evaluation (its statistics depend on the batches) and
    does not use this.
    """
    return min(batch_size, CPU_PASS_LIMIT) if torch.device(device).type == "cpu" else batch_size


def pass_slices(count: int, batch_size: int, device: Union[torch.device, str]) -> Iterator[slice]:
    """The slices of ``count`` examples that evaluation passes on ``device`` take, in order:
    ``batch_size`` at a time, at most :data:`CPU_PASS_LIMIT` on the CPU (:func:`examples_per_pass`)."""
    step = examples_per_pass(batch_size, device)
    return (slice(start, start + step) for start in range(0, count, step))


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    batch_size: int = EVAL_BATCH_SIZE,
    device: Optional[Union[torch.device, str]] = None,
) -> Tuple[float, float]:
    """Mean cross-entropy (natural log) and accuracy of ``model`` on ``(images, labels)``:
    the one evaluation of genzoo (training records and measures alike).

    ``images`` are uint8 images normalized here per batch with ``mean``/``std``, or, when
    both are None, inputs already as the model takes them (float, normalized). The model runs
    in eval mode (BatchNorm uses its running statistics, dropout is off) and is put back in
    the mode it was in. Batches are moved to ``device`` (default: the model's parameters'
    device, else the images'). Logits are cast to float32; the loss sums accumulate on the
    device in float64 (float32 on MPS, which has no float64) and are read back once. On the
    CPU each batch runs as passes of at most :data:`CPU_PASS_LIMIT` examples
    (:func:`examples_per_pass`).
    """
    if images.shape[0] == 0 or labels.shape != (images.shape[0],):
        raise DatasetError(f"images/labels: got {tuple(images.shape)} and {tuple(labels.shape)}, allowed: N ≥ 1 of each")
    if (mean is None) != (std is None):
        raise DatasetError("mean/std: give both (uint8 images) or neither (prepared inputs)")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else images.device
    device = torch.device(device)
    accumulate = torch.float32 if device.type == "mps" else torch.float64
    total_loss = torch.zeros((), dtype=accumulate, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    if mean is not None:
        if images.dim() != 4 or images.shape[1] != len(mean) or len(mean) != len(std):
            raise DatasetError(f"images: got shape {tuple(images.shape)}, allowed: N×{len(mean)}×H×W")
        channel_tensors = _channel_tensors(mean, std, device)
    was_training = model.training
    model.eval()
    try:
        for part in pass_slices(images.shape[0], batch_size, device):
            x = images[part].to(device)
            if mean is not None:
                x = _normalize(x, *channel_tensors)
            y = labels[part].to(device=device, dtype=torch.int64)
            logits = model(x).float()
            total_loss += F.cross_entropy(logits, y, reduction="sum").to(accumulate)
            correct += (logits.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    n = images.shape[0]
    return float(total_loss) / n, float(correct) / n
