"""The registered datasets and models, torch-free, so that a sweep file is validated
(``genzoo sweep plan``) without importing torch: their names, each dataset's sizes and input
shape, each model's hyperparameters and its number of parameters. Tests keep them equal to
the registries (``trainers.data``, ``trainers.models``) and the counts to the built models.
"""

from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

DATASETS = ("digits", "digits_large_test", "cifar10", "cifar100", "mnist")
MODELS = ("lenet_300_100", "mcnn", "nin", "resnet18", "resnet18k", "resnet20", "resnet32", "resnet56", "vgg11", "vgg16")


class DatasetInfo(NamedTuple):
    """A dataset's full training and test sets, its classes and one example's (C, H, W)."""

    train: int
    test: int
    classes: int
    shape: Tuple[int, int, int]


DATASET_INFO: Dict[str, DatasetInfo] = {
    # scikit-learn's 1,797 digits, 36 (or 100) test images per class, upsampled to 32x32 RGB.
    "digits": DatasetInfo(1437, 360, 10, (3, 32, 32)),
    "digits_large_test": DatasetInfo(797, 1000, 10, (3, 32, 32)),
    "cifar10": DatasetInfo(50_000, 10_000, 10, (3, 32, 32)),
    "cifar100": DatasetInfo(50_000, 10_000, 100, (3, 32, 32)),
    "mnist": DatasetInfo(60_000, 10_000, 10, (1, 28, 28)),
}

# The hyperparameters of trainers.models.build each model accepts (besides the class count).
MODEL_HYPERPARAMETERS: Dict[str, Tuple[str, ...]] = {name: ("width",) for name in MODELS}
MODEL_HYPERPARAMETERS["nin"] = ("width", "depth", "dropout")
# The models that take any input shape; the others take 3x32x32 images.
ANY_INPUT_SHAPE = ("lenet_300_100",)
IMAGE_SHAPE = (3, 32, 32)

# The largest model a trial may build: 10^9 parameters (4 GB of float32 weights, and as much
# again for each of the gradient, the momentum and the saved states). The zoos' largest
# models are about 1.5 * 10^7 (VGG16 at width 64).
MAX_PARAMETERS = 1_000_000_000


def _conv(c_in: int, c_out: int, kernel: int, bias: bool) -> int:
    return c_in * c_out * kernel * kernel + (c_out if bias else 0)


def _bn(channels: int) -> int:
    return 2 * channels


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _basic_block(c_in: int, c_out: int, stride: int) -> int:
    """trainers.models.resnet.BasicBlock (post-activation, projection shortcut)."""
    shortcut = _conv(c_in, c_out, 1, False) + _bn(c_out) if stride != 1 or c_in != c_out else 0
    return _conv(c_in, c_out, 3, False) + _bn(c_out) + _conv(c_out, c_out, 3, False) + _bn(c_out) + shortcut


def _preact_block(c_in: int, c_out: int, stride: int) -> int:
    """trainers.models.resnet.PreActBlock."""
    shortcut = _conv(c_in, c_out, 1, False) if stride != 1 or c_in != c_out else 0
    return _bn(c_in) + _conv(c_in, c_out, 3, False) + _bn(c_out) + _conv(c_out, c_out, 3, False) + shortcut


def _stages(block, width: int, multipliers: Sequence[int], per_stage: int) -> int:
    total, c_in = 0, width
    for stage, multiplier in enumerate(multipliers):
        for index in range(per_stage):
            total += block(c_in, width * multiplier, 2 if stage > 0 and index == 0 else 1)
            c_in = width * multiplier
    return total


def parameter_count(model: str, classes: int, *, width: Optional[int] = None, depth: Optional[int] = None,
                    input_shape: Sequence[int] = IMAGE_SHAPE) -> int:
    """The number of parameters (weights, biases, BatchNorm scales and shifts; not buffers) of
    ``trainers.models.build(model, classes, width=..., depth=..., input_shape=...)``."""
    if model == "nin":
        w, d = width or 192, depth or 3
        blocks = sum(_conv(c_in, w, 3, True) + _bn(w) + 2 * (_conv(w, w, 1, True) + _bn(w))
                     for c_in in [3] + [w] * (d - 1))
        return blocks + _conv(w, classes, 4, True)
    if model == "mcnn":
        w = width or 64
        channels = [3, w, 2 * w, 4 * w, 8 * w]
        return sum(_conv(a, b, 3, True) + _bn(b) for a, b in zip(channels, channels[1:])) + _linear(8 * w, classes)
    if model == "resnet18k":
        k = width or 64
        return _conv(3, k, 3, False) + _stages(_preact_block, k, (1, 2, 4, 8), 2) + _linear(8 * k, classes)
    if model == "resnet18":
        w = width or 64
        return _conv(3, w, 3, False) + _bn(w) + _stages(_basic_block, w, (1, 2, 4, 8), 2) + _linear(8 * w, classes)
    if model in ("resnet20", "resnet32", "resnet56"):
        w, n = width or 16, (int(model[6:]) - 2) // 6
        return _conv(3, w, 3, False) + _bn(w) + _stages(_basic_block, w, (1, 2, 4), n) + _linear(4 * w, classes)
    if model == "lenet_300_100":
        w = width or 300
        second = max(1, round(w / 3))
        return _linear(math.prod(input_shape), w) + _linear(w, second) + _linear(second, classes)
    if model in ("vgg11", "vgg16"):
        w = width or 64
        counts = (1, 1, 2, 2, 2) if model == "vgg11" else (2, 2, 3, 3, 3)
        total, c_in = 0, 3
        for multiplier, count in zip((1, 2, 4, 8, 8), counts):
            for _ in range(count):
                total += _conv(c_in, w * multiplier, 3, True) + _bn(w * multiplier)
                c_in = w * multiplier
        return total + _linear(c_in, classes)
    raise ValueError(f"model: unknown model {model!r}, allowed: {', '.join(MODELS)}")
