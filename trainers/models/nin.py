"""Network-in-Network of the DEMOGEN zoo (Jiang et al. 2019) as extended to several depths by
"Robustness to pruning predicts generalization" (appendix A.3, table 4).

Architecture (32×32 inputs): ``depth`` NiN blocks, then a 4×4 convolution to the classes and a
global average pool. A NiN block is a 3×3 convolution with stride 2 followed by two 1×1
convolutions, each convolution followed by BatchNorm and ReLU; every convolution has
``width`` output channels and a bias (TensorFlow's default, kept by the DEMOGEN code).
Dropout with rate ``dropout`` follows every block. The spatial size halves in every block:
32 → 16 → 8 → 4 → 2.

The head. DEMOGEN applies the 4×4 convolution with 'VALID' padding on the 4×4 map of its
three-block network, giving one logit per class. That is impossible on the 2×2 map of a
four-block network, so by default (``head_padding="same"``) the head is padded like
TensorFlow's 'SAME' (1 row/column before, 2 after, on each spatial dimension), which keeps
the spatial size for every depth, and the class scores are the average over positions.
``head_padding="valid"`` reproduces DEMOGEN exactly for depth 3 (and averages the 5×5 output
for depth 2); it rejects depths whose map is smaller than 4×4.

Padding of the 3×3 stride-2 convolution is 1 on every side (TensorFlow's 'SAME' pads 0 before
and 1 after here; the output size, 16, is the same).

Initialization: PyTorch defaults (Kaiming-uniform with a = √5 for weights, uniform biases,
BatchNorm weight 1 and bias 0). The DEMOGEN code uses TensorFlow's Glorot-uniform weights and
zero biases; the zoo does not reuse its weights, so this choice only changes the random init.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

DEFAULT_WIDTH = 192
DEFAULT_DEPTH = 3
HEAD_KERNEL = 4
HEAD_PADDINGS = ("same", "valid")
# TensorFlow 'SAME' for a 4×4 kernel at stride 1 pads 3 in total: floor(3/2) before, the rest
# after. ZeroPad2d takes (left, right, top, bottom).
_SAME_PAD_4X4 = (1, 2, 1, 2)


class NiNBlock(nn.Module):
    """One NiN block (table 4 of the prunability paper): 3×3/2, 1×1, 1×1 convolutions, each
    followed by BatchNorm and ReLU. ``bn3`` outputs the block's pre-activation, the tensor the
    DEMOGEN code exports as the block's end point for margins."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width, kernel_size=1)
        self.bn3 = nn.BatchNorm2d(width)
        # Not in-place: forward hooks on bn3 must see the pre-ReLU tensor unchanged.
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.relu(self.bn3(self.conv3(x)))


class NiN(nn.Module):
    """DEMOGEN-style Network-in-Network; see the module docstring for every choice."""

    def __init__(
        self,
        num_classes: int,
        *,
        width: int = DEFAULT_WIDTH,
        depth: int = DEFAULT_DEPTH,
        dropout: float = 0.0,
        head_padding: str = "same",
        input_size: int = 32,
    ) -> None:
        super().__init__()
        if head_padding not in HEAD_PADDINGS:
            raise ValueError(f"head_padding: got {head_padding!r}, allowed: {', '.join(HEAD_PADDINGS)}")
        final_size = _size_after_blocks(input_size, depth)
        if head_padding == "valid" and final_size < HEAD_KERNEL:
            raise ValueError(
                f"head_padding: 'valid' needs a final map of at least {HEAD_KERNEL}x{HEAD_KERNEL}, "
                f"depth {depth} leaves {final_size}x{final_size}; allowed: 'same'"
            )
        channels = [3] + [width] * depth
        self.blocks = nn.ModuleList(NiNBlock(c_in, width) for c_in in channels[:-1])
        self.dropout = nn.Dropout(dropout)
        self.pad = nn.ZeroPad2d(_SAME_PAD_4X4) if head_padding == "same" else nn.Identity()
        self.head = nn.Conv2d(width, num_classes, kernel_size=HEAD_KERNEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = self.dropout(block(x))
        return self.head(self.pad(x)).mean(dim=(2, 3))

    def margin_layers(self) -> List[Tuple[str, nn.Module]]:
        """("block<i>", module) for every block; the module outputs the block's pre-activation
        (BatchNorm output of its last 1×1 convolution, before ReLU and dropout), which is
        where DEMOGEN (Jiang et al. 2019) measures hidden-layer margins."""
        return [(f"block{i + 1}", block.bn3) for i, block in enumerate(self.blocks)]


def _size_after_blocks(size: int, depth: int) -> int:
    for _ in range(depth):
        # 3×3 kernel, stride 2, padding 1.
        size = (size + 2 * 1 - 3) // 2 + 1
    return size


def build_nin(
    num_classes: int, *, width: int = DEFAULT_WIDTH, depth: int = DEFAULT_DEPTH, dropout: float = 0.0
) -> NiN:
    """The registry's ``nin``: width 192, depth 3, no dropout by default (the paper varies
    width over 192/288/384, depth over 2/3/4 and dropout over 0/0.2/0.5)."""
    return NiN(num_classes, width=width, depth=depth, dropout=dropout)
