"""Residual networks for 32×32 inputs.

``resnet18k``: the pre-activation ResNet18 (He et al. 2016, "Identity mappings in deep
residual networks") in the CIFAR form of kuangliu/pytorch-cifar, with the width parameter k of
Nakkiran et al. 2020, "Deep double descent" (section 3): a 3×3 stem convolution with k
channels, four stages of two pre-activation basic blocks with k, 2k, 4k, 8k channels (stride 2
at the start of stages 2-4), a global average pool and a linear layer. Like the reference
code, and unlike He et al.'s pre-activation networks, there is no BatchNorm-ReLU after the
last block (that BatchNorm would add 16k parameters and break the count below). Convolutions have no bias. Where a block changes shape, the shortcut is a 1×1
convolution applied to the block's pre-activated input. At k = 64 with 10 classes it has
11,171,146 parameters.

``resnet20``, ``resnet32``, ``resnet56``: the CIFAR ResNets of He et al. 2016, "Deep residual
learning for image recognition" (section 4.2, depth 6n + 2 with n = 3, 5, 9): a 3×3 stem
convolution, three stages of n post-activation basic blocks with w, 2w, 4w channels (w = 16
by default), a global average pool and a linear layer. Shortcuts that change shape are projections (1×1 convolution with
stride 2, then BatchNorm; option B of the paper), as in open_lth (the lottery-ticket code base of
Frankle et al., whose IMP setup "Pruning's effect on generalization" follows): every parameter then lives in a Conv2d, Linear or BatchNorm, so
pruning and weight norms see all of them, and any width works. At w = 16 with 10 classes
ResNet20 has 272,474 parameters (option A's parameter-free shortcuts would give 269,722),
ResNet32 466,906 and ResNet56 855,770.

Initialization: PyTorch defaults.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

RESNET18K_DEFAULT_WIDTH = 64
RESNET20_DEFAULT_WIDTH = 16
_RESNET18_BLOCKS_PER_STAGE = 2


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3-BN-ReLU-conv3×3 plus the shortcut. Its
    output is the residual sum, which has no activation of its own."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + identity


class PreActResNet18(nn.Module):
    """Pre-activation ResNet18 with stage widths k, 2k, 4k, 8k; see the module docstring."""

    def __init__(self, num_classes: int, *, width: int = RESNET18K_DEFAULT_WIDTH) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*_stages(PreActBlock, width, (1, 2, 4, 8), _RESNET18_BLOCKS_PER_STAGE))
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block<i>", block) for the eight residual blocks; each outputs its residual sum."""
        return [(f"block{i + 1}", block) for i, block in enumerate(self.blocks)]


class BasicBlock(nn.Module):
    """Post-activation basic block: conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU.

    ``preact`` is an identity module applied to the residual sum before the final ReLU, so
    that a forward hook can read the block's pre-activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.preact = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.preact(out + self.shortcut(x)))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n + 2 with stage widths w, 2w, 4w; see the module docstring."""

    def __init__(self, num_classes: int, *, depth: int = 20, width: int = RESNET20_DEFAULT_WIDTH) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth: got {depth}, allowed: 6n + 2 with n >= 1 (20, 32, 56, ...)")
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.blocks = nn.Sequential(*_stages(BasicBlock, width, (1, 2, 4), (depth - 2) // 6))
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(out.mean(dim=(2, 3)))

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block<i>", module) for every residual block; the module outputs the block's
        residual sum before its final ReLU (the same pre-activation point as the other
        models)."""
        return [(f"block{i + 1}", block.preact) for i, block in enumerate(self.blocks)]


def _stages(block: type, width: int, multipliers: Tuple[int, ...], blocks_per_stage: int) -> List[nn.Module]:
    """Blocks of every stage in order; the first block of every stage but the first has stride 2."""
    layers: List[nn.Module] = []
    in_channels = width
    for stage, multiplier in enumerate(multipliers):
        out_channels = width * multiplier
        for index in range(blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(block(in_channels, out_channels, stride))
            in_channels = out_channels
    return layers


def build_resnet18k(num_classes: int, *, width: int = RESNET18K_DEFAULT_WIDTH) -> PreActResNet18:
    """The registry's ``resnet18k``: k = 64 by default (Nakkiran et al. vary k in 1..64)."""
    return PreActResNet18(num_classes, width=width)


def build_resnet20(num_classes: int, *, width: int = RESNET20_DEFAULT_WIDTH) -> CifarResNet:
    """The registry's ``resnet20``: w = 16 by default."""
    return CifarResNet(num_classes, depth=20, width=width)


def build_resnet32(num_classes: int, *, width: int = RESNET20_DEFAULT_WIDTH) -> CifarResNet:
    """The registry's ``resnet32``: w = 16 by default."""
    return CifarResNet(num_classes, depth=32, width=width)


def build_resnet56(num_classes: int, *, width: int = RESNET20_DEFAULT_WIDTH) -> CifarResNet:
    """The registry's ``resnet56``: w = 16 by default."""
    return CifarResNet(num_classes, depth=56, width=width)
