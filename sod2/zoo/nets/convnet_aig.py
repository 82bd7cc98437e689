"""ConvNet-AIG (Veit and Belongie, ECCV 2018): adaptive inference graphs over a ResNet.

Every residual block has its own light gate that reads the block's input: global average pooling,
a linear layer to 16 units, BatchNorm, ReLU, and a linear layer to two relevance logits (skip,
execute). Training samples the decision with Gumbel noise; inference takes the hard argmax, i.e.
the block runs when `logit_execute - logit_skip > threshold`. Each block is a `torch.cond` (ONNX
`If`); a skipped downsampling block still applies its shortcut projection.
Outputs: class logits and the decision of every block.
"""

from __future__ import annotations

import torch
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

GATE_HIDDEN = 16


class InferenceGate(nn.Module):
    """Pooled features -> 16 -> BN -> ReLU -> (skip, execute) logits; returns their margin."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(channels, GATE_HIDDEN)
        self.norm = nn.BatchNorm1d(GATE_HIDDEN)
        self.relevance = nn.Linear(GATE_HIDDEN, 2)
        self.register_buffer("threshold", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`logit_execute - logit_skip - threshold` (a scalar): execute the block when > 0."""
        hidden = torch.relu(self.norm(self.reduce(x.mean(dim=(2, 3)))))
        logits = self.relevance(hidden)
        return (logits[0, 1] - logits[0, 0]) - self.threshold


class ConvNetAIG(nn.Module):
    """ResNet with an inference gate on every residual block."""

    def __init__(self, shape: ResNetShape, classes: int) -> None:
        super().__init__()
        self.stem = imagenet_stem(shape.stem_channels)
        blocks = residual_blocks(shape.stem_channels, shape.widths, shape.depths, shape.bottleneck)
        self.blocks = nn.ModuleList(blocks)
        in_channels = [shape.stem_channels] + [block.out_channels for block in blocks[:-1]]
        self.gates = nn.ModuleList(InferenceGate(channels) for channels in in_channels)
        self.head = ClassifierHead(blocks[-1].out_channels, classes)
        randomize_norm_layers(self)
        damp_residual_blocks(blocks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits `[1, K]` and the decisions `[blocks]` (True = executed)."""
        x = self.stem(image)
        decisions = []
        for gate, block in zip(self.gates, self.blocks, strict=True):
            execute = gate(x) > 0
            x = torch.cond(execute, block.forward, block.skip, (x,))
            decisions.append(execute)
        return self.head(x), torch.stack(decisions)

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Set each gate's threshold between the sweep's gate values, block by block, feeding
        every image through the decisions taken so far."""
        features = [self.stem(image) for image in images]
        for index, (gate, block) in enumerate(zip(self.gates, self.blocks, strict=True)):
            margins = [gate(x).item() for x in features]
            gate.threshold.fill_(split_threshold(margins, what=f"gate {index}"))
            features = [block(x) if gate(x) > 0 else block.skip(x) for x in features]


def build(shape: ResNetShape, classes: int, images: list[torch.Tensor]) -> ConvNetAIG:
    """A seeded ConvNet-AIG calibrated on `images`, in eval mode."""
    network = ConvNetAIG(shape, classes).eval()
    network.calibrate(images)
    return network
