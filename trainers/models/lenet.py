"""LeNet-300-100, the fully connected MNIST benchmark of lottery-ticket and pruning work
(LeCun et al. 1998; Frankle & Carbin 2019, Figure 2; open_lth's ``mnist_lenet_300_100``).

The input image is flattened and passes through two hidden linear layers with ReLU, of
``width`` and ``round(width / 3)`` units (300 and 100 by default, so width down-scaling by 0.8
scales both), then a linear layer to the classes. On MNIST (1×28×28) with 10 classes it has
266,610 parameters. It takes any input shape (``input_shape``, from the dataset).

Initialization: PyTorch defaults.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from torch import nn

DEFAULT_WIDTH = 300


class LeNet300100(nn.Module):
    def __init__(self, num_classes: int, *, input_shape: Sequence[int], width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        second = max(1, round(width / 3))
        self.fc1 = nn.Linear(math.prod(input_shape), width)
        self.fc2 = nn.Linear(width, second)
        self.fc3 = nn.Linear(second, num_classes)
        self.hidden1 = nn.Identity()
        self.hidden2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.hidden1(self.fc1(x.flatten(1))))
        out = torch.relu(self.hidden2(self.fc2(out)))
        return self.fc3(out)

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block1", "block2"): the two hidden layers' pre-activations (N×units)."""
        return [("block1", self.hidden1), ("block2", self.hidden2)]


def build_lenet_300_100(num_classes: int, *, input_shape: Sequence[int] = (1, 28, 28),
                        width: int = DEFAULT_WIDTH) -> LeNet300100:
    """The registry's ``lenet_300_100``: 300-100 hidden units by default."""
    return LeNet300100(num_classes, input_shape=input_shape, width=width)
