"""What a dataset is, without torch: :class:`DatasetSpec`, one per registered dataset
(:mod:`trainers.data.registry`), enough for ``genzoo sweep plan`` (sizes, shape), the reader
(classes and shape, to build a model without loading its data) and the analysis (the test
set's size). A leaf: imports none of the loaders, so it stays torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from trainers.registry import is_reference
from trainers.values import is_int


class DatasetError(ValueError):
    """A bad dataset name, a missing or corrupt file, or a bad loader argument (one line)."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the registry.

    ``loader``: ``"module:attr"`` of ``fn(root: pathlib.Path) -> trainers.data.RawDataset``,
    the full, uncorrupted train and test splits (uint8 images ``N×C×H×W``) read from the data
    root; imported only to load. ``classes``, ``input_shape`` (one example's (C, H, W)),
    ``train_size`` and ``test_size`` (the full splits) are what the loader returns, which
    :func:`trainers.data.load` checks. ``download``: ``"module:attr"`` of
    ``fn(root: pathlib.Path) -> pathlib.Path`` that fetches the files into the data root (or
    says where a bundled dataset is), None when there is nothing to download
    (``genzoo data download`` offers the datasets that have one).
    """

    name: str
    loader: str
    classes: int
    input_shape: Tuple[int, ...]
    train_size: int
    test_size: int
    download: Optional[str] = None

    def __post_init__(self) -> None:
        where = f"dataset {self.name}"
        for name in ("loader", "download"):
            value = getattr(self, name)
            if not (value is None and name == "download") and not is_reference(value):
                raise DatasetError(f"{where}: {name} got {value!r}, allowed: a 'package.module:attr' string")
        for name in ("classes", "train_size", "test_size"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise DatasetError(f"{where}: {name} got {value!r}, allowed: a positive integer")
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (list, tuple)) else ()
        if len(shape) != 3 or not all(is_int(v) and v >= 1 for v in shape):
            raise DatasetError(f"{where}: input_shape got {self.input_shape!r}, allowed: (C, H, W) positive integers")
        object.__setattr__(self, "input_shape", shape)
