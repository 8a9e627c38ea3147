"""Datasets (the offline ``digits`` default, CIFAR-10, CIFAR-100), label noise, and a loader
that keeps the whole dataset on the training device.

Every dataset is held as uint8 images ``N×3×32×32`` on the CPU; conversion to float and
normalization happen per batch on the device (the airbench recipe: Jordan, *94% on CIFAR-10
in 3.29 seconds on a single GPU*, 2024). All randomness is drawn from CPU
``torch.Generator`` objects whose seeds are derived from the trial seed and a purpose tag, so
a trial gives the same data on every device and after every resume.

Nothing here touches the network except :func:`download`, and torchvision and scikit-learn
are imported only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import pickle
import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PathLike = Union[str, os.PathLike]
Triple = Tuple[float, float, float]

ENV_DATA_ROOT = "GENZOO_DATA"
IMAGE_SIZE = 32
AUGMENT_PADDING = 4
EVAL_BATCH_SIZE = 1024

# Per-channel mean and standard deviation of the 50,000 training images, in [0, 1] pixel
# units (the population std over all pixels of a channel, not the per-image average std).
CIFAR10_MEAN: Triple = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Triple = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: Triple = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: Triple = (0.2673, 0.2564, 0.2762)

# The digits split is part of the dataset, not of the trial: a fixed seed and 36 test
# images per class (360 test, 1437 train).
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_PER_CLASS = 36


class DatasetError(ValueError):
    """A bad dataset name, a missing or corrupt file, or a bad loader argument (one line)."""


@dataclass(frozen=True)
class Dataset:
    """One dataset as used by one trial, all tensors on the CPU.

    Images are uint8 ``N×3×32×32``; labels are int64. ``train_labels`` are the labels the
    model is trained on (after label noise), ``clean_train_labels`` the original ones and
    ``noisy`` is True exactly where the two differ. ``mean``/``std`` are per-channel, in
    [0, 1] pixel units, for :func:`normalize`.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    noisy: torch.Tensor
    clean_train_labels: torch.Tensor
    mean: Triple
    std: Triple

    def tiled(self, times: int) -> "Dataset":
        """The same dataset with its training split repeated ``times`` times (labels, clean
        labels and noise flags with it; the test split unchanged). Benchmarks use it to get a
        CIFAR-sized epoch (``digits`` tiled 35 times: 50,295 images) where CIFAR cannot be
        downloaded."""
        if times < 1:
            raise DatasetError(f"repeat: got {times}, allowed: an integer >= 1")
        return dataclasses.replace(
            self,
            train_images=self.train_images.repeat(times, 1, 1, 1),
            train_labels=self.train_labels.repeat(times),
            clean_train_labels=self.clean_train_labels.repeat(times),
            noisy=self.noisy.repeat(times),
        )


class RawDataset(NamedTuple):
    """What a registered loader returns: the full, uncorrupted train and test splits."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: Triple
    std: Triple


# --------------------------------------------------------------------------- locations


def data_root(root: Optional[PathLike] = None) -> pathlib.Path:
    """The data folder: ``root`` if given, else ``$GENZOO_DATA``, else ``~/.cache/genzoo``."""
    if root is not None:
        return pathlib.Path(root).expanduser()
    from_env = os.environ.get(ENV_DATA_ROOT)
    if from_env:
        return pathlib.Path(from_env).expanduser()
    return pathlib.Path.home() / ".cache" / "genzoo"


# --------------------------------------------------------------------------- seeds


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the trial seed and a purpose tag (sha256 of ``"/".join(parts)``).

    Distinct purposes (subset, label noise, each loader epoch) get unrelated streams even
    when they share the trial seed.
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(*parts: object) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(*parts))
    return generator


# --------------------------------------------------------------------------- digits


def _load_digits(root: pathlib.Path) -> RawDataset:
    """scikit-learn's bundled UCI handwritten digits, shaped like CIFAR; ``root`` is unused.

    The 1797 8×8 images (values 0..16) are upsampled to 32×32 with bilinear interpolation
    (``torch.nn.functional.interpolate``, ``align_corners=False``, so every output pixel is
    a convex combination of input pixels and stays in 0..16), scaled by 255/16, rounded to
    uint8 and replicated to 3 channels. The split is stratified and fixed
    (``DIGITS_SPLIT_SEED`` = 0, ``DIGITS_TEST_PER_CLASS`` = 36 test images of each class:
    360 test, 1437 train), both splits in the original order. ``mean``/``std`` are the
    per-channel statistics of the train split.
    """
    del root
    from sklearn.datasets import load_digits  # lazy: only the offline dataset needs it

    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32)  # 1797×8×8, 0..16
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    images = digits_to_images(pixels)
    train_idx, test_idx = stratified_split(bunch.target, DIGITS_TEST_PER_CLASS, DIGITS_SPLIT_SEED)
    train_images = images[torch.as_tensor(train_idx)]
    mean, std = channel_stats(train_images)
    return RawDataset(
        train_images=train_images,
        train_labels=labels[torch.as_tensor(train_idx)],
        test_images=images[torch.as_tensor(test_idx)],
        test_labels=labels[torch.as_tensor(test_idx)],
        num_classes=10,
        mean=mean,
        std=std,
    )


def digits_to_images(pixels: torch.Tensor, size: int = IMAGE_SIZE, max_value: float = 16.0) -> torch.Tensor:
    """``N×h×w`` gray images with values in ``[0, max_value]`` -> uint8 ``N×3×size×size``.

    Bilinear upsampling (``align_corners=False``), then ``round(v * 255 / max_value)``, the
    gray channel copied to R, G and B.
    """
    upsampled = F.interpolate(pixels[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)
    scaled = torch.round(upsampled * (255.0 / max_value)).clamp_(0, 255).to(torch.uint8)
    return scaled.expand(-1, 3, -1, -1).contiguous()


def stratified_split(labels: Sequence[int], test_per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``, each sorted, with ``test_per_class`` test examples per class.

    Uses ``numpy.random.RandomState(seed)``, whose stream numpy guarantees never to change,
    so the split is the same on every numpy version; classes are visited in sorted order.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    test = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) <= test_per_class:
            raise DatasetError(f"test_per_class: got {test_per_class}, class {cls} has only {len(members)} examples")
        test.append(rng.permutation(members)[:test_per_class])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def channel_stats(images: torch.Tensor) -> Tuple[Triple, Triple]:
    """Per-channel mean and (population) std of uint8 ``N×C×H×W`` images in [0, 1] units."""
    values = images.double().div(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    mean = values.mean(dim=1)
    std = values.std(dim=1, unbiased=False)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


# --------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    name: str
    folder: str
    train_files: Tuple[str, ...]
    test_file: str
    label_key: str
    num_classes: int
    mean: Triple
    std: Triple


_CIFAR10 = _CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    label_key="labels",
    num_classes=10,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
)
_CIFAR100 = _CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    label_key="fine_labels",
    num_classes=100,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
)


def _fix_command(name: str, root: pathlib.Path) -> str:
    return f"run `genzoo data download {name} --root {root}`"


def read_cifar_batch(path: pathlib.Path, label_key: str, num_classes: int, *, fix: str = "") -> Tuple[torch.Tensor, torch.Tensor]:
    """One file of the python-pickle CIFAR layout -> uint8 ``N×3×32×32`` images, int64 labels.

    The file is a pickled dict with ``b"data"`` (uint8 ``N×3072``: each row is the 1024 red,
    then 1024 green, then 1024 blue values of a 32×32 image in row-major order) and
    ``label_key`` (``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100): N ints in
    ``[0, num_classes)``. Any N is accepted. A missing file, an unpickling failure or a wrong
    shape raises :class:`DatasetError` naming the file, followed by ``fix``.
    """
    suffix = f"; {fix}" if fix else ""
    if not path.is_file():
        raise DatasetError(f"missing file {path}{suffix}")
    try:
        with open(path, "rb") as handle:
            # The standard files are Python-2 pickles: bytes keys need encoding="bytes".
            batch = pickle.load(handle, encoding="bytes")
    except Exception as error:  # a corrupt pickle can raise almost any exception type
        raise DatasetError(f"corrupt file {path}: cannot unpickle ({type(error).__name__}){suffix}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"corrupt file {path}: expected a dict, got {type(batch).__name__}{suffix}")
    data = _lookup(batch, "data")
    labels = _lookup(batch, label_key)
    pixels = IMAGE_SIZE * IMAGE_SIZE * 3
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"corrupt file {path}: 'data' must be uint8 N×{pixels}, got {got}{suffix}")
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"corrupt file {path}: '{label_key}' is not a list of integers{suffix}") from None
    if label_array.shape != (data.shape[0],):
        raise DatasetError(
            f"corrupt file {path}: {data.shape[0]} images but '{label_key}' has shape {label_array.shape}{suffix}"
        )
    if label_array.size and (label_array.min() < 0 or label_array.max() >= num_classes):
        raise DatasetError(f"corrupt file {path}: '{label_key}' outside [0, {num_classes}){suffix}")
    images = torch.from_numpy(data.copy()).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return images, torch.from_numpy(label_array)


def _lookup(batch: dict, key: str) -> object:
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _load_cifar(layout: _CifarLayout, root: pathlib.Path) -> RawDataset:
    folder = root / layout.folder
    fix = _fix_command(layout.name, root)
    if not folder.is_dir():
        raise DatasetError(f"{layout.name}: missing folder {folder}; {fix}")
    parts = [read_cifar_batch(folder / f, layout.label_key, layout.num_classes, fix=fix) for f in layout.train_files]
    test_images, test_labels = read_cifar_batch(folder / layout.test_file, layout.label_key, layout.num_classes, fix=fix)
    return RawDataset(
        train_images=torch.cat([images for images, _ in parts]),
        train_labels=torch.cat([labels for _, labels in parts]),
        test_images=test_images,
        test_labels=test_labels,
        num_classes=layout.num_classes,
        mean=layout.mean,
        std=layout.std,
    )


def _load_cifar10(root: pathlib.Path) -> RawDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (data_batch_1..5, test_batch).

    mean = ``CIFAR10_MEAN`` = (0.4914, 0.4822, 0.4465), std = ``CIFAR10_STD`` =
    (0.2470, 0.2435, 0.2616): the statistics of the standard 50,000 training images.
    """
    return _load_cifar(_CIFAR10, root)


def _load_cifar100(root: pathlib.Path) -> RawDataset:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python`` (train, test).

    mean = ``CIFAR100_MEAN`` = (0.5071, 0.4865, 0.4409), std = ``CIFAR100_STD`` =
    (0.2673, 0.2564, 0.2762): the statistics of the standard 50,000 training images.
    """
    return _load_cifar(_CIFAR100, root)


# --------------------------------------------------------------------------- registry

Loader = Callable[[pathlib.Path], RawDataset]

DATASETS: Mapping[str, Loader] = MappingProxyType(
    {"digits": _load_digits, "cifar10": _load_cifar10, "cifar100": _load_cifar100}
)
_DOWNLOADABLE = {"cifar10": ("CIFAR10", _CIFAR10.folder), "cifar100": ("CIFAR100", _CIFAR100.folder)}


def names() -> Tuple[str, ...]:
    """The registered dataset names."""
    return tuple(DATASETS)


def get(name: str) -> Loader:
    """The loader registered as ``name``; an unknown name raises :class:`DatasetError`."""
    if name not in DATASETS:
        raise DatasetError(f"dataset: got {name!r}, allowed: {', '.join(names())}")
    return DATASETS[name]


def download(name: str, root: Optional[PathLike] = None) -> pathlib.Path:
    """Download ``name`` into ``data_root(root)`` and return its folder.

    CIFAR uses torchvision's downloader, which verifies the archive's MD5 checksum and
    skips the download when the files are already there. ``digits`` ships with
    scikit-learn: nothing is downloaded and the path of the bundled file is returned.
    """
    get(name)
    if name == "digits":
        import sklearn.datasets  # lazy, as everywhere in this module

        return pathlib.Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    import torchvision.datasets  # lazy: never needed to train or to run the tests

    class_name, folder = _DOWNLOADABLE[name]
    target = data_root(root)
    target.mkdir(parents=True, exist_ok=True)
    dataset_class = getattr(torchvision.datasets, class_name)
    dataset_class(str(target), train=True, download=True)
    dataset_class(str(target), train=False, download=True)
    return target / folder


# --------------------------------------------------------------------------- trial view


def corrupt_labels(labels: torch.Tensor, num_classes: int, fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random label noise: ``(new_labels, noisy_mask)``.

    Paul et al., *Pruning's effect on generalization through the lens of training and
    regularization* (NeurIPS 2022), Section 4 "Method": select p% of the examples uniformly
    at random and give each a label drawn uniformly from the *other* classes. Exactly
    ``round(fraction * N)`` examples change (Python's ``round``: halves go to the even
    integer). The examples are the first ones of a random permutation, and the new label is
    ``(label + k) mod num_classes`` with ``k`` uniform in ``1..num_classes-1``, which is
    uniform over the other classes. Randomness: a CPU generator seeded with
    ``derive_seed(seed, "label_noise")``. The input is not modified.
    """
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0.0 <= fraction < 1.0:
        raise DatasetError(f"label_noise: got {fraction!r}, allowed: a fraction in [0, 1)")
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    n = labels.numel()
    count = round(fraction * n)
    noisy = torch.zeros(n, dtype=torch.bool)
    if count == 0:
        return labels.clone(), noisy
    if num_classes < 2:
        raise DatasetError(f"num_classes: got {num_classes}, label noise needs at least 2 classes")
    generator = _generator(seed, "label_noise")
    chosen = torch.randperm(n, generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    new_labels = labels.clone()
    new_labels[chosen] = (labels[chosen] + shift) % num_classes
    noisy[chosen] = True
    return new_labels, noisy


def subset_indices(available: int, train_size: Optional[int], seed: int) -> torch.Tensor:
    """Sorted indices of the ``train_size`` examples a trial keeps (all when ``None``).

    The first ``train_size`` entries of a permutation from a CPU generator seeded with
    ``derive_seed(seed, "subset")``, sorted so that ``train_size == available`` keeps the
    dataset unchanged.
    """
    if train_size is None:
        return torch.arange(available)
    if isinstance(train_size, bool) or not isinstance(train_size, int) or not 1 <= train_size <= available:
        raise DatasetError(f"train_size: got {train_size!r}, allowed: an integer in [1, {available}] or None")
    order = torch.randperm(available, generator=_generator(seed, "subset"))
    return order[:train_size].sort().values


def load(
    name: str,
    root: Optional[PathLike] = None,
    *,
    train_size: Optional[int] = None,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """The dataset ``name`` as one trial sees it: a seeded training subset, then label noise.

    ``train_size`` keeps that many training examples (:func:`subset_indices`); label noise
    corrupts ``round(label_noise * N)`` of the N kept examples (:func:`corrupt_labels`).
    The test set is never subset nor corrupted.
    """
    raw = get(name)(data_root(root))
    keep = subset_indices(len(raw.train_labels), train_size, seed)
    clean = raw.train_labels[keep]
    noisy_labels, noisy = corrupt_labels(clean, raw.num_classes, label_noise, seed)
    return Dataset(
        name=name,
        train_images=raw.train_images[keep],
        train_labels=noisy_labels,
        test_images=raw.test_images,
        test_labels=raw.test_labels,
        num_classes=raw.num_classes,
        noisy=noisy,
        clean_train_labels=clean,
        mean=tuple(raw.mean),  # type: ignore[arg-type]
        std=tuple(raw.std),  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- on device


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
    ``AUGMENT_PADDING`` = 4 pixels, then a horizontal flip with probability 0.5, per example,
    vectorized on the device (:func:`crop_flip`). ``device=None`` keeps the images where
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
        span = 2 * AUGMENT_PADDING + 1
        dy = torch.randint(0, span, (n,), generator=generator)
        dx = torch.randint(0, span, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        return EpochPlan(order, dy, dx, flip)

    def batches(self, epoch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` for epoch ``epoch``: x float32 normalized, y int64, both on the device."""
        plan = EpochPlan(*(t.to(self.device) if t is not None else None for t in self.epoch_plan(epoch)))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = plan.order[start:start + self.batch_size]
            images = self.images[index]
            if self.augment:
                window = slice(start, start + len(index))
                images = crop_flip(images, plan.dy[window], plan.dx[window], plan.flip[window])
            yield _normalize(images, *self._channel_tensors), self.labels[index]

    def eval_batches(self, batch_size: int = EVAL_BATCH_SIZE) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """All examples in their stored order, normalized, never augmented."""
        for start in range(0, self.images.shape[0], batch_size):
            images = self.images[start:start + batch_size]
            yield _normalize(images, *self._channel_tensors), self.labels[start:start + batch_size]


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
    device in float64 (float32 on MPS, which has no float64) and are read back once.
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
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            if mean is not None:
                x = _normalize(x, *channel_tensors)
            y = labels[start:start + batch_size].to(device=device, dtype=torch.int64)
            logits = model(x).float()
            total_loss += F.cross_entropy(logits, y, reduction="sum").to(accumulate)
            correct += (logits.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    n = images.shape[0]
    return float(total_loss) / n, float(correct) / n
