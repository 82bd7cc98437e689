"""RaNet (Yang et al., CVPR 2020): resolution-adaptive sub-networks with early exits.

Sub-network i sees the image downsampled by `SCALES[i]` (4, 2, then full resolution) and fuses
the upsampled features of sub-network i-1. Each ends in a classifier. Inference stops at the
first classifier whose confidence (largest softmax probability) reaches its exit threshold, so
easy images are classified cheaply at low resolution. The exits are nested `torch.cond`s (ONNX
`If` inside `If`). Like RaNet's, the thresholds are set on held-out inputs (here: the sweep).
Outputs: the logits of the exit taken and its index (0, 1 or 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sod2.zoo.calibration import split_threshold
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.nets.resnet import ClassifierHead, conv_bn

SCALES = (4, 2, 1)
CLASSIFIER_GAIN = 4.0
"""Random classifiers give near-uniform softmax outputs; a trained one is confident on some
images. A larger initial weight spreads the logits (std of a few units), so that the confidence,
and with it the exit taken, varies from image to image as it does after training."""


class DenseStage(nn.Module):
    """DenseNet layers: each appends `growth` channels computed by BN, ReLU, 3x3 conv."""

    def __init__(self, channels: int, layers: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(channels + i * growth),
                nn.ReLU(),
                nn.Conv2d(channels + i * growth, growth, 3, 1, 1, bias=False),
            )
            for i in range(layers)
        )
        self.out_channels = channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with every layer's output concatenated."""
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class SubNetwork(nn.Module):
    """Stem (stride 2), fusion of the previous sub-network, two dense stages around a stride-2
    transition, and a classifier."""

    def __init__(self, width: int, layers: int, growth: int, fused: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, width, 3, 2), nn.ReLU())
        self.fuse = conv_bn(fused, width, 1) if fused else None
        self.first = DenseStage(width, layers, growth)
        self.transition = nn.Sequential(
            conv_bn(self.first.out_channels, width, 1), nn.ReLU(), nn.AvgPool2d(2)
        )
        self.second = DenseStage(width, layers, growth)
        self.out_channels = self.second.out_channels
        self.norm = nn.BatchNorm2d(self.out_channels)
        self.classifier = ClassifierHead(self.out_channels, classes)
        nn.init.normal_(
            self.classifier.linear.weight, 0.0, CLASSIFIER_GAIN / math.sqrt(self.out_channels)
        )

    def forward(self, image: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """Features of this sub-network (at 1/4 of its input's resolution)."""
        x = self.stem(image)
        if self.fuse is not None and previous is not None:
            x = x + self.fuse(
                F.interpolate(previous, size=x.shape[-2:], mode="bilinear", align_corners=False)
            )
        return self.second(self.transition(self.first(x)))

    def classify(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits `[1, K]` and the confidence (largest softmax probability, a scalar)."""
        logits = self.classifier(torch.relu(self.norm(features)))
        return logits, torch.softmax(logits, dim=-1).max()


class RaNet(nn.Module):
    """Three sub-networks at 1/4, 1/2 and full resolution with early exits after each."""

    def __init__(
        self, widths: Sequence[int], layers: Sequence[int], growths: Sequence[int], classes: int
    ) -> None:
        super().__init__()
        subnets, fused = [], 0
        for width, depth, growth in zip(widths, layers, growths, strict=True):
            subnets.append(SubNetwork(width, depth, growth, fused, classes))
            fused = subnets[-1].out_channels
        self.subnets = nn.ModuleList(subnets)
        self.register_buffer("thresholds", torch.zeros(len(subnets) - 1))
        randomize_norm_layers(self)

    def run_subnet(
        self, index: int, image: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        """Features, logits and confidence of sub-network `index`."""
        scaled = F.avg_pool2d(image, SCALES[index]) if SCALES[index] > 1 else image
        features = self.subnets[index](scaled, previous)
        return (features, *self.subnets[index].classify(features))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits `[1, K]` of the first confident exit and that exit's index."""
        features, logits, confidence = self.run_subnet(0, image, None)
        exits = confidence >= self.thresholds[0]
        return torch.cond(exits, self._exit_first, self._after_first, (image, features, logits))

    def _exit_first(
        self, image: torch.Tensor, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.clone(), torch.zeros((), dtype=torch.int64)

    def _after_first(
        self, image: torch.Tensor, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits, confidence = self.run_subnet(1, image, features)
        exits = confidence >= self.thresholds[1]
        return torch.cond(exits, self._exit_second, self._run_last, (image, features, logits))

    def _exit_second(
        self, image: torch.Tensor, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.clone(), torch.ones((), dtype=torch.int64)

    def _run_last(
        self, image: torch.Tensor, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, logits, _ = self.run_subnet(2, image, features)
        return logits, torch.full((), 2, dtype=torch.int64)

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Exit thresholds such that, over the sweep, some images leave at each exit: at least 2
        at the first, and of the rest at least 2 at the second and 2 at the last (fewer if the
        sweep is too short)."""
        remaining = [(image, None) for image in images]
        for index in range(len(self.thresholds)):
            steps = [
                (image, self.run_subnet(index, image, previous)) for image, previous in remaining
            ]
            confidences = [step[2].item() for _, step in steps]
            later_exits = len(self.thresholds) - index
            threshold = split_threshold(
                confidences, min_below=2 * later_exits, min_above=2, what=f"exit {index}"
            )
            self.thresholds[index] = threshold
            remaining = [(image, step[0]) for image, step in steps if step[2].item() < threshold]


def build(
    widths: Sequence[int],
    layers: Sequence[int],
    growths: Sequence[int],
    classes: int,
    images: list[torch.Tensor],
) -> RaNet:
    """A seeded RaNet calibrated on `images`, in eval mode."""
    network = RaNet(widths, layers, growths, classes).eval()
    network.calibrate(images)
    return network
