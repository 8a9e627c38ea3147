"""``resnet18``: the post-activation ResNet18 for CIFAR (He et al. 2016, "Deep residual learning
for image recognition", the 18-layer network of Table 1) in the form of kuangliu/pytorch-cifar,
the ResNet18 of "The generalization-stability tradeoff in neural network pruning" (Section 3).

A 3×3 stem convolution with w channels, BatchNorm and ReLU (no max-pool: the input is 32×32),
four stages of two post-activation basic blocks (:class:`trainers.models.resnet.BasicBlock`:
conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU) with w, 2w, 4w, 8w channels (stride 2
at the start of stages 2-4; shape-changing shortcuts are a 1×1 convolution and BatchNorm), a
global average pool and one linear layer. Convolutions have no bias. At w = 64 with 10 classes
it has 11,173,962 parameters. Initialization: PyTorch defaults.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from trainers.models.resnet import BasicBlock, _stages

RESNET18_DEFAULT_WIDTH = 64
_BLOCKS_PER_STAGE = 2


class ResNet18(nn.Module):
    """Post-activation ResNet18 with stage widths w, 2w, 4w, 8w; see the module docstring."""

    def __init__(self, num_classes: int, *, width: int = RESNET18_DEFAULT_WIDTH) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.blocks = nn.Sequential(*_stages(BasicBlock, width, (1, 2, 4, 8), _BLOCKS_PER_STAGE))
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(out.mean(dim=(2, 3)))

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block<i>", module) for the eight residual blocks: each block's residual sum
        before its final ReLU."""
        return [(f"block{i + 1}", block.preact) for i, block in enumerate(self.blocks)]


def build_resnet18(num_classes: int, *, width: int = RESNET18_DEFAULT_WIDTH) -> ResNet18:
    """The registry's ``resnet18``: w = 64 by default."""
    return ResNet18(num_classes, width=width)
