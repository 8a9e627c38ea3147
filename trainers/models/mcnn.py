"""The 5-layer CNN ``mCNN(c)`` of Nakkiran et al. 2020, "Deep double descent" (section 3,
"Standard CNNs"; the double-descent zoo of the prunability paper, appendix A.4).

Four 3×3 convolutions (padding 1, with bias) of c, 2c, 4c, 8c channels, each followed by
BatchNorm and ReLU, with a 2×2 max-pool after the last three; then a 4×4 max-pool (the 4×4
map becomes 1×1) and a linear layer. For 10 classes it has 378c² + 152c + 10 parameters
(1,558,026 at c = 64).

Initialization: PyTorch defaults, as in the reference code.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

DEFAULT_WIDTH = 64
_CHANNEL_MULTIPLIERS = (1, 2, 4, 8)
_POOL_AFTER = (False, True, True, True)
_FINAL_POOL = 4


class ConvBlock(nn.Module):
    """3×3 convolution (padding 1), BatchNorm, ReLU, and an optional 2×2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        # Not in-place: forward hooks on bn must see the pre-ReLU tensor unchanged.
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class MCNN(nn.Module):
    """mCNN(c) of Nakkiran et al. 2020; see the module docstring."""

    def __init__(self, num_classes: int, *, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        channels = [3] + [width * m for m in _CHANNEL_MULTIPLIERS]
        self.blocks = nn.Sequential(
            *(
                ConvBlock(c_in, c_out, bias=True, pool=pool)
                for c_in, c_out, pool in zip(channels[:-1], channels[1:], _POOL_AFTER)
            )
        )
        self.pool = nn.MaxPool2d(_FINAL_POOL)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(x)), 1))

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block<i>", BatchNorm) for the four conv layers: each layer's pre-activation, the
        same point DEMOGEN uses for NiN blocks."""
        return [(f"block{i + 1}", block.bn) for i, block in enumerate(self.blocks)]


def build_mcnn(num_classes: int, *, width: int = DEFAULT_WIDTH) -> MCNN:
    """The registry's ``mcnn``: width c = 64 by default (Nakkiran et al. vary c in 1..64)."""
    return MCNN(num_classes, width=width)
