"""The dataset registry: one :class:`~trainers.data.spec.DatasetSpec` per dataset, the
built-in ones listed here. Torch-free: a loader is a ``"module:attr"`` string imported only
when :func:`trainers.data.load` loads it.

Adding a dataset: its implementation file (a loader returning ``RawDataset``), one
``register(DatasetSpec(...))`` line (here for a built-in dataset, in the extension module for
any other) and its test.
"""

from __future__ import annotations

from typing import Tuple

from trainers.data.spec import DatasetError, DatasetSpec
from trainers.registry import Registry

_DATASETS: Registry[DatasetSpec] = Registry("dataset", DatasetSpec, DatasetError)


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset; an equal spec again is a no-op, another spec under its name a DatasetError."""
    return _DATASETS.register(spec)


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; an unknown name is a DatasetError listing the registered ones."""
    return _DATASETS.get(name)


def names() -> Tuple[str, ...]:
    """The registered dataset names, in registration order (the built-ins first)."""
    return _DATASETS.names()


_SOURCES = "trainers.data.sources"
# scikit-learn's 1,797 digits, upsampled to 32x32 RGB: 36 (or 100) test images per class.
register(DatasetSpec("digits", f"{_SOURCES}:load_digits", 10, (3, 32, 32), 1437, 360,
                     download=f"{_SOURCES}:bundled_digits"))
register(DatasetSpec("digits_large_test", f"{_SOURCES}:load_digits_large_test", 10, (3, 32, 32), 797, 1000,
                     download=f"{_SOURCES}:bundled_digits"))
register(DatasetSpec("cifar10", f"{_SOURCES}:load_cifar10", 10, (3, 32, 32), 50_000, 10_000,
                     download=f"{_SOURCES}:download_cifar10"))
register(DatasetSpec("cifar100", f"{_SOURCES}:load_cifar100", 100, (3, 32, 32), 50_000, 10_000,
                     download=f"{_SOURCES}:download_cifar100"))
register(DatasetSpec("mnist", f"{_SOURCES}:load_mnist", 10, (1, 28, 28), 60_000, 10_000,
                     download=f"{_SOURCES}:download_mnist"))
