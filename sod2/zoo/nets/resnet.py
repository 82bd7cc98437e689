"""ResNet pieces shared by the gated networks (SkipNet, ConvNet-AIG, BlockDrop, DGNet).

A block computes `relu(shortcut(x) + residual(x))`. Its `skip(x)` is what a gated network keeps
when the block is not executed: the shortcut alone (the identity, or the projection of a
downsampling block, which must still change the shape), as SkipNet, ConvNet-AIG and BlockDrop do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sod2.zoo.nets.init import damp_residual_branch


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd kernels) followed by BatchNorm."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class ResidualBlock(nn.Module):
    """A basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) residual block."""

    def __init__(self, in_channels: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        self.out_channels = width * 4 if bottleneck else width
        if bottleneck:
            layers = [conv_bn(in_channels, width, 1), nn.ReLU(), conv_bn(width, width, 3, stride)]
            layers += [nn.ReLU(), conv_bn(width, self.out_channels, 1)]
        else:
            layers = [conv_bn(in_channels, width, 3, stride), nn.ReLU(), conv_bn(width, width, 3)]
        self.residual = nn.Sequential(*layers)
        self.projects = stride != 1 or in_channels != self.out_channels
        self.shortcut = (
            conv_bn(in_channels, self.out_channels, 1, stride) if self.projects else None
        )

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output when it is not executed: its shortcut (a copy for the identity)."""
        return self.shortcut(x) if self.shortcut is not None else x.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`relu(shortcut(x) + residual(x))`."""
        identity = self.shortcut(x) if self.shortcut is not None else x
        return torch.relu(identity + self.residual(x))


def residual_blocks(
    in_channels: int, widths: Sequence[int], depths: Sequence[int], bottleneck: bool
) -> list[ResidualBlock]:
    """The blocks of a ResNet: stage i has `depths[i]` blocks of `widths[i]`; every stage after
    the first starts with a stride-2 block."""
    blocks = []
    channels = in_channels
    for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        for index in range(depth):
            stride = 2 if stage > 0 and index == 0 else 1
            block = ResidualBlock(channels, width, stride, bottleneck)
            blocks.append(block)
            channels = block.out_channels
    return blocks


def damp_residual_blocks(blocks: Sequence[ResidualBlock]) -> None:
    """Damp the last BatchNorm of every block's residual branch (after `randomize_norm_layers`)."""
    for block in blocks:
        damp_residual_branch(block.residual[-1][1])


def imagenet_stem(channels: int) -> nn.Sequential:
    """7x7 stride-2 conv, BatchNorm, ReLU, 3x3 stride-2 max pool: the input is downsampled 4x."""
    return nn.Sequential(
        nn.Conv2d(3, channels, 7, 2, 3, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    )


class ClassifierHead(nn.Module):
    """Global average pooling then a linear classifier: `[1, C, h, w]` -> `[1, classes]`."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.linear(x.mean(dim=(2, 3)))
