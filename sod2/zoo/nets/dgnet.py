"""DGNet (Li et al., ICCV 2021): dynamic dual gating, per channel and per spatial position.

Each bottleneck block has two gates read from its input: a channel gate (global pooling, linear
layer, one logit per middle channel) and a spatial gate (a 3x3 conv at the block's output stride,
one logit per output position). At inference both are hard (`logit > threshold`). The masks zero
the middle channels and the output positions that are off; DGNet's sparse kernels would skip that
work, while here it is computed densely and masked. When no channel or no position is on, the
whole residual branch does nothing, and the block is skipped through `torch.cond` (ONNX `If`).
Outputs: class logits and which blocks computed.
"""

from __future__ import annotations

import torch
from torch import nn

from sod2.zoo.calibration import widest_gap_threshold
from sod2.zoo.image_models import ResNetShape
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.nets.resnet import (
    ClassifierHead,
    ResidualBlock,
    damp_residual_blocks,
    imagenet_stem,
    residual_blocks,
)


class DualGatedBlock(nn.Module):
    """A bottleneck block whose middle channels and output positions are gated."""

    def __init__(self, block: ResidualBlock, in_channels: int) -> None:
        super().__init__()
        width = block.residual[0][0].out_channels
        stride = block.residual[2][0].stride
        self.block = block
        self.channel_gate = nn.Linear(in_channels, width)
        self.spatial_gate = nn.Conv2d(in_channels, 1, 3, stride, 1)
        self.register_buffer("channel_threshold", torch.zeros(()))
        self.register_buffer("spatial_threshold", torch.zeros(()))

    def gate_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel logits `[1, width]` and spatial logits `[1, 1, h, w]`, thresholds removed."""
        channel = self.channel_gate(x.mean(dim=(2, 3))) - self.channel_threshold
        spatial = self.spatial_gate(x) - self.spatial_threshold
        return channel, spatial

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and whether its residual branch computed (a bool scalar)."""
        channel, spatial = self.gate_logits(x)
        channel_mask = (channel > 0).to(x.dtype)[:, :, None, None]
        spatial_mask = (spatial > 0).to(x.dtype)
        computes = (channel_mask.sum() > 0) & (spatial_mask.sum() > 0)
        output = torch.cond(computes, self.masked, self.skip, (x, channel_mask, spatial_mask))
        return output, computes

    def masked(
        self, x: torch.Tensor, channel_mask: torch.Tensor, spatial_mask: torch.Tensor
    ) -> torch.Tensor:
        """The residual branch with its middle channels and output positions masked."""
        layers = self.block.residual
        hidden = torch.relu(layers[0](x)) * channel_mask
        hidden = torch.relu(layers[2](hidden)) * channel_mask * spatial_mask
        residual = layers[4](hidden) * spatial_mask
        identity = self.block.shortcut(x) if self.block.shortcut is not None else x
        return torch.relu(identity + residual)

    def skip(
        self, x: torch.Tensor, channel_mask: torch.Tensor, spatial_mask: torch.Tensor
    ) -> torch.Tensor:
        """The block's output when no channel or no position is on: its shortcut."""
        return self.block.skip(x)

    def calibrate(self, features: list[torch.Tensor]) -> None:
        """Threshold the channel gate so that some sweep images turn all channels off and the
        others keep their strongest ones, and the spatial gate so that about half of all
        positions compute; both thresholds sit in the widest gap between the gate values."""
        logits = [self.gate_logits(x) for x in features]
        maxima = [channel.max().item() for channel, _ in logits]
        third = max(1, len(maxima) // 3)

        def balanced(threshold: float) -> bool:
            return third <= sum(value > threshold for value in maxima) <= len(maxima) - third

        channels = [value for channel, _ in logits for value in channel.flatten().tolist()]
        self.channel_threshold.fill_(widest_gap_threshold(channels, balanced, "channel gate"))
        positions = torch.cat([spatial.flatten() for _, spatial in logits]).tolist()
        central = sorted(positions)[len(positions) * 2 // 5 : len(positions) * 3 // 5 + 1]
        low, high = central[0], central[-1]
        threshold = widest_gap_threshold(positions, lambda t: low <= t <= high, "spatial gate")
        self.spatial_threshold.fill_(threshold)


class DGNet(nn.Module):
    """A bottleneck ResNet in which every block is dual-gated."""

    def __init__(self, shape: ResNetShape, classes: int) -> None:
        super().__init__()
        self.stem = imagenet_stem(shape.stem_channels)
        blocks = residual_blocks(shape.stem_channels, shape.widths, shape.depths, bottleneck=True)
        in_channels = [shape.stem_channels] + [block.out_channels for block in blocks[:-1]]
        self.blocks = nn.ModuleList(
            DualGatedBlock(block, channels)
            for block, channels in zip(blocks, in_channels, strict=True)
        )
        self.head = ClassifierHead(blocks[-1].out_channels, classes)
        randomize_norm_layers(self)
        damp_residual_blocks(blocks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits `[1, K]` and, per block, whether it computed."""
        x = self.stem(image)
        computed = []
        for block in self.blocks:
            x, computes = block(x)
            computed.append(computes)
        return self.head(x), torch.stack(computed)

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Calibrate block after block, feeding the sweep's images through the gates so far."""
        features = [self.stem(image) for image in images]
        for block in self.blocks:
            block.calibrate(features)
            features = [block(x)[0] for x in features]


def build(shape: ResNetShape, classes: int, images: list[torch.Tensor]) -> DGNet:
    """A seeded DGNet calibrated on `images`, in eval mode."""
    network = DGNet(shape, classes).eval()
    network.calibrate(images)
    return network
