"""SkipNet (Wang et al., ECCV 2018): a ResNet whose residual blocks are skipped by gates.

Before every block but the first, a recurrent gate reads the current feature map: global average
pooling, a per-block linear projection, one LSTM cell whose weights all gates share (SkipNet's
RNN gate for ImageNet ResNets) and a linear readout to one logit. At inference the gate is hard:
the block runs when `logit > threshold`, written with `torch.cond`, which exports as ONNX `If`.
The threshold is a per-block offset calibrated on the sweep (see `sod2.zoo.calibration`).
Outputs: class logits and the executed/skipped decision of every gated block.
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

GateState = tuple[torch.Tensor, torch.Tensor]


class RecurrentGate(nn.Module):
    """Pooled features -> projection of block i -> shared LSTM cell -> logit minus threshold i."""

    def __init__(self, channels: list[int], embed: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.projections = nn.ModuleList(nn.Linear(width, embed) for width in channels)
        self.cell = nn.LSTMCell(embed, hidden)
        self.readout = nn.Linear(hidden, 1)
        self.register_buffer("thresholds", torch.zeros(len(channels)))

    def initial_state(self, x: torch.Tensor) -> GateState:
        """Zero hidden and cell states for one image."""
        return x.new_zeros(1, self.hidden), x.new_zeros(1, self.hidden)

    def forward(
        self, x: torch.Tensor, index: int, state: GateState
    ) -> tuple[torch.Tensor, GateState]:
        """The gate value of block `index` (execute when > 0) and the next LSTM state."""
        hidden, cell = self.cell(self.projections[index](x.mean(dim=(2, 3))), state)
        logit = self.readout(hidden).reshape(()) - self.thresholds[index]
        return logit, (hidden, cell)


class SkipNet(nn.Module):
    """ResNet with a recurrent gate before every block after the first."""

    def __init__(self, shape: ResNetShape, classes: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.stem = imagenet_stem(shape.stem_channels)
        blocks = residual_blocks(shape.stem_channels, shape.widths, shape.depths, shape.bottleneck)
        self.blocks = nn.ModuleList(blocks)
        gated_inputs = [block.out_channels for block in blocks[:-1]]
        self.gate = RecurrentGate(gated_inputs, embed, hidden)
        self.head = ClassifierHead(blocks[-1].out_channels, classes)
        randomize_norm_layers(self)
        damp_residual_blocks(blocks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits `[1, K]` and the decisions `[blocks - 1]` (True = executed)."""
        x = self.blocks[0](self.stem(image))
        state = self.gate.initial_state(x)
        decisions = []
        for index, block in enumerate(self.blocks[1:]):
            logit, state = self.gate(x, index, state)
            execute = logit > 0
            x = torch.cond(execute, block.forward, block.skip, (x,))
            decisions.append(execute)
        return self.head(x), torch.stack(decisions)

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Set each gate's threshold so that the sweep's images fall on both sides of it, walking
        all images through the network together, block by block, with the decisions so far."""
        features = [self.blocks[0](self.stem(image)) for image in images]
        states = [self.gate.initial_state(x) for x in features]
        for index, block in enumerate(self.blocks[1:]):
            steps = [self.gate(x, index, state) for x, state in zip(features, states, strict=True)]
            threshold = split_threshold([logit.item() for logit, _ in steps], what=f"gate {index}")
            self.gate.thresholds[index] = threshold
            states = [state for _, state in steps]
            features = [
                block(x) if logit.item() > threshold else block.skip(x)
                for x, (logit, _) in zip(features, steps, strict=True)
            ]


def build(
    shape: ResNetShape, classes: int, embed: int, hidden: int, images: list[torch.Tensor]
) -> SkipNet:
    """A seeded SkipNet calibrated on `images`, in eval mode."""
    network = SkipNet(shape, classes, embed, hidden).eval()
    network.calibrate(images)
    return network
