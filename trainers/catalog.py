"""What ``genzoo sweep plan`` needs to know of a dataset and a model without torch, read from
their specs (:mod:`trainers.data.registry`, :mod:`trainers.models.registry`): each dataset's
sizes and input shape, each model's number of parameters. tests/trainers/test_catalog.py
keeps the specs equal to the loaders and the counts to the built models.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

from trainers.data import registry as datasets
from trainers.models import registry as models
from trainers.models.spec import IMAGE_SHAPE
from trainers.registry import resolve

# The largest model a trial may build: 10^9 parameters (4 GB of float32 weights, and as much
# again for each of the gradient, the momentum and the saved states). The zoos' largest
# models are about 1.5 * 10^7 (VGG16 at width 64).
MAX_PARAMETERS = 1_000_000_000


class DatasetInfo(NamedTuple):
    """A dataset's full training and test sets, its classes and one example's (C, H, W)."""

    train: int
    test: int
    classes: int
    shape: Tuple[int, ...]


def dataset_info(name: str) -> DatasetInfo:
    """The sizes of dataset ``name``; an unknown name is a DatasetError listing the registered ones."""
    spec = datasets.get(name)
    return DatasetInfo(spec.train_size, spec.test_size, spec.classes, spec.input_shape)


def parameter_count(model: str, classes: int, *, width: Optional[int] = None, depth: Optional[int] = None,
                    input_shape: Sequence[int] = IMAGE_SHAPE) -> int:
    """The number of parameters (weights, biases, BatchNorm scales and shifts; not buffers) of
    ``trainers.models.build(model, classes, width=..., depth=..., input_shape=...)``."""
    spec = models.get(model)
    width, depth = spec.with_defaults(width, depth)
    if spec.parameter_count is None:
        from trainers.models.factory import built_parameter_count

        return built_parameter_count(model, classes, width, depth, tuple(input_shape))
    return int(resolve(spec.parameter_count)(classes, width=width, depth=depth, input_shape=tuple(input_shape)))
