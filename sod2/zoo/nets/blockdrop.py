"""BlockDrop (Wu et al., CVPR 2018): a policy network chooses, in one shot, which residual blocks
of a ResNet to run for this image.

The policy is a small ResNet that sees the image resized to a fixed low resolution and outputs one
logit per block of the main ResNet; at inference a block runs when its sigmoid exceeds 0.5, i.e.
`logit > threshold`. Each block of the main network is a `torch.cond` on its policy bit (ONNX
`If`); a dropped downsampling block keeps its shortcut projection.
Outputs: class logits and the policy (the keep bit of every block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sod2.zoo.calibration import split_threshold
from sod2.zoo.image_models import ResNetShape
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.nets.resnet import (
    ClassifierHead,
    damp_residual_blocks,
    imagenet_stem,
    residual_blocks,
)


class PolicyNetwork(nn.Module):
    """A ResNet over the image resized to `resolution` x `resolution`: one logit per block."""

    def __init__(self, shape: ResNetShape, resolution: int, decisions: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.stem = imagenet_stem(shape.stem_channels)
        blocks = residual_blocks(shape.stem_channels, shape.widths, shape.depths, shape.bottleneck)
        self.blocks = nn.Sequential(*blocks)
        self.head = ClassifierHead(blocks[-1].out_channels, decisions)
        self.register_buffer("thresholds", torch.zeros(decisions))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """`[blocks]` keep logits minus thresholds: keep a block when > 0."""
        size = (self.resolution, self.resolution)
        small = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        return self.head(self.blocks(self.stem(small)))[0] - self.thresholds


class BlockDrop(nn.Module):
    """A ResNet whose blocks a policy network keeps or drops."""

    def __init__(
        self, shape: ResNetShape, policy: ResNetShape, resolution: int, classes: int
    ) -> None:
        super().__init__()
        self.stem = imagenet_stem(shape.stem_channels)
        blocks = residual_blocks(shape.stem_channels, shape.widths, shape.depths, shape.bottleneck)
        self.blocks = nn.ModuleList(blocks)
        self.policy = PolicyNetwork(policy, resolution, len(blocks))
        self.head = ClassifierHead(blocks[-1].out_channels, classes)
        randomize_norm_layers(self)
        damp_residual_blocks(blocks)
        damp_residual_blocks(list(self.policy.blocks))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits `[1, K]` and the policy `[blocks]` (True = kept)."""
        keep = self.policy(image) > 0
        x = self.stem(image)
        for index, block in enumerate(self.blocks):
            x = torch.cond(keep[index], block.forward, block.skip, (x,))
        return self.head(x), keep

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Set each policy threshold between the sweep's policy logits for that block."""
        logits = torch.stack([self.policy(image) for image in images])
        for index in range(logits.shape[1]):
            values = logits[:, index].tolist()
            self.policy.thresholds[index] = split_threshold(values, what=f"policy bit {index}")


def build(
    shape: ResNetShape,
    policy: ResNetShape,
    resolution: int,
    classes: int,
    images: list[torch.Tensor],
) -> BlockDrop:
    """A seeded BlockDrop calibrated on `images`, in eval mode."""
    network = BlockDrop(shape, policy, resolution, classes).eval()
    network.calibrate(images)
    return network
