"""CIFAR variants of VGG11 and VGG16 (Simonyan & Zisserman 2015, configurations A and D).

As in "The generalization-stability tradeoff in neural network pruning" (section 3: "VGG11
with batch normalization and its dense layers replaced by a single dense layer") and the
common CIFAR code bases (kuangliu/pytorch-cifar, open_lth): every 3×3 convolution (padding 1,
with bias) is followed by BatchNorm and ReLU; five 2×2 max-pools take the 32×32 input to 1×1;
a single linear layer maps the last stage's channels to the classes.

Width: the five stages have ``width · (1, 2, 4, 8, 8)`` channels, i.e. VGG's
64/128/256/512/512 scaled by width/64 (64 by default). Any positive integer is allowed, so
width down-scaling by 0.8 per step ("Pruning's effect on generalization", section 5) works.

At width 64 with 10 classes: VGG11 has 9,231,114 parameters, VGG16 14,728,266.

Initialization: PyTorch defaults.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from trainers.models.mcnn import ConvBlock

DEFAULT_WIDTH = 64
_STAGE_MULTIPLIERS = (1, 2, 4, 8, 8)
# Number of conv layers per stage; every stage ends with a 2×2 max-pool.
VGG11_STAGES = (1, 1, 2, 2, 2)
VGG16_STAGES = (2, 2, 3, 3, 3)


class VGG(nn.Module):
    """VGG with BatchNorm and one linear layer; ``stages`` gives the conv layers per stage."""

    def __init__(self, num_classes: int, *, stages: Sequence[int], width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        layers = []
        in_channels = 3
        for multiplier, count in zip(_STAGE_MULTIPLIERS, stages, strict=True):
            out_channels = width * multiplier
            for index in range(count):
                layers.append(ConvBlock(in_channels, out_channels, bias=True, pool=index == count - 1))
                in_channels = out_channels
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.blocks(x), 1))

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block<i>", BatchNorm) for every conv layer: its pre-activation, the same point
        DEMOGEN uses for NiN blocks."""
        return [(f"block{i + 1}", block.bn) for i, block in enumerate(self.blocks)]


def build_vgg11(num_classes: int, *, width: int = DEFAULT_WIDTH) -> VGG:
    """The registry's ``vgg11`` (8 conv layers)."""
    return VGG(num_classes, stages=VGG11_STAGES, width=width)


def build_vgg16(num_classes: int, *, width: int = DEFAULT_WIDTH) -> VGG:
    """The registry's ``vgg16`` (13 conv layers)."""
    return VGG(num_classes, stages=VGG16_STAGES, width=width)
