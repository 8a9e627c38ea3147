"""Datasets (the offline ``digits`` default, CIFAR-10, CIFAR-100, MNIST), label noise, and a
loader that keeps the whole dataset on the training device: one package, modules of one job
each (:mod:`~trainers.data.spec` and :mod:`~trainers.data.registry`, torch-free: what each
dataset is; :mod:`~trainers.data.sources`: where the built-in ones come from;
:mod:`~trainers.data.views`: a trial's subset and label noise; :mod:`~trainers.data.device`:
the loader), whose public names are importable from here.

Every dataset is held as uint8 images ``N×C×H×W`` on the CPU; conversion to float and
normalization happen per batch on the device (the airbench recipe: Jordan, *94% on CIFAR-10
in 3.29 seconds on a single GPU*, 2024). All randomness is drawn from CPU
``torch.Generator`` objects whose seeds are derived from the trial seed and a purpose tag, so
a trial gives the same data on every device and after every resume.

Importing this package imports no torch: a public name is imported from its module when it is
first used (PEP 562), so that ``genzoo sweep plan`` reads the dataset registry without torch.
Nothing here touches the network except :func:`download`, and torchvision and scikit-learn
are imported only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from trainers.data.registry import get as get_spec, names, register
from trainers.data.spec import DatasetError, DatasetSpec

# Each lazily imported public name and the module that defines it.
_LAZY = {
    **dict.fromkeys(["DeviceLoader", "EpochPlan", "crop_flip", "evaluate", "examples_per_pass", "normalize",
                     "pass_slices"], "trainers.data.device"),
    **dict.fromkeys(["AUGMENT_PADDING", "CPU_PASS_LIMIT", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN",
                     "CIFAR100_STD", "DIGITS_SPLIT_SEED", "DIGITS_LARGE_TEST_PER_CLASS", "DIGITS_TEST_PER_CLASS",
                     "ENV_DATA_ROOT", "EVAL_BATCH_SIZE", "IMAGE_SIZE", "MNIST_MEAN", "MNIST_STD", "Dataset",
                     "RawDataset", "channel_stats", "data_root", "derive_seed", "digits_to_images", "download", "get",
                     "read_cifar_batch", "read_idx", "stratified_split"], "trainers.data.sources"),
    **dict.fromkeys(["corrupt_labels", "load", "subset_indices"], "trainers.data.views"),
}
_SUBMODULES = ("device", "registry", "sources", "spec", "views")

__all__ = sorted([*_LAZY, "DatasetError", "DatasetSpec", "get_spec", "names", "register"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
