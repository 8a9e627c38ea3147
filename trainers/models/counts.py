"""The parameter count of every built-in model, torch-free, so that ``genzoo sweep plan``
refuses a model too large to train without building it (each :class:`ModelSpec`'s
``parameter_count``). Counts are weights, biases, BatchNorm scales and shifts, not buffers;
``width`` and ``depth`` arrive with the model's defaults filled in.
tests/trainers/test_catalog.py keeps every count equal to the built model's.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence


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


def _stages(block: Callable[[int, int, int], int], width: int, multipliers: Sequence[int], per_stage: int) -> int:
    total, c_in = 0, width
    for stage, multiplier in enumerate(multipliers):
        for index in range(per_stage):
            total += block(c_in, width * multiplier, 2 if stage > 0 and index == 0 else 1)
            c_in = width * multiplier
    return total


def nin(classes: int, *, width: int, depth: int, input_shape: Sequence[int]) -> int:
    blocks = sum(_conv(c_in, width, 3, True) + _bn(width) + 2 * (_conv(width, width, 1, True) + _bn(width))
                 for c_in in [3] + [width] * (depth - 1))
    return blocks + _conv(width, classes, 4, True)


def mcnn(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    channels = [3, width, 2 * width, 4 * width, 8 * width]
    return sum(_conv(a, b, 3, True) + _bn(b) for a, b in zip(channels, channels[1:])) + _linear(8 * width, classes)


def resnet18k(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return _conv(3, width, 3, False) + _stages(_preact_block, width, (1, 2, 4, 8), 2) + _linear(8 * width, classes)


def resnet18(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return (_conv(3, width, 3, False) + _bn(width) + _stages(_basic_block, width, (1, 2, 4, 8), 2)
            + _linear(8 * width, classes))


def _cifar_resnet(layers: int, classes: int, width: int) -> int:
    """The CIFAR ResNet of ``layers`` = 6n + 2 layers (n blocks per stage)."""
    n = (layers - 2) // 6
    return _conv(3, width, 3, False) + _bn(width) + _stages(_basic_block, width, (1, 2, 4), n) + _linear(4 * width, classes)


def resnet20(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return _cifar_resnet(20, classes, width)


def resnet32(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return _cifar_resnet(32, classes, width)


def resnet56(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return _cifar_resnet(56, classes, width)


def lenet_300_100(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    second = max(1, round(width / 3))
    return _linear(math.prod(input_shape), width) + _linear(width, second) + _linear(second, classes)


def _vgg(counts: Sequence[int], classes: int, width: int) -> int:
    total, c_in = 0, 3
    for multiplier, count in zip((1, 2, 4, 8, 8), counts):
        for _ in range(count):
            total += _conv(c_in, width * multiplier, 3, True) + _bn(width * multiplier)
            c_in = width * multiplier
    return total + _linear(c_in, classes)


def vgg11(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return _vgg((1, 1, 2, 2, 2), classes, width)


def vgg16(classes: int, *, width: int, depth: Optional[int], input_shape: Sequence[int]) -> int:
    return _vgg((2, 2, 3, 3, 3), classes, width)
