"""Zoo entry: SkipNet, a ResNet whose blocks a recurrent gate executes or skips (`If` per block).

Dynamism: the resolution (`H`, `W`) and, per gated block, an `If` whose condition is computed from
the activations. Small: a 4-stage basic-block ResNet with 8 blocks (7 gates). Paper: ResNet-101
(33 bottleneck blocks, 32 gates), as in SkipNet's ImageNet experiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sod2.zoo.image_models import (
    IMAGE,
    IMAGENET_CLASSES,
    LOGITS,
    RESNET_101,
    RESNET_SMALL,
    RESOLUTION,
    RESOLUTION_EXAMPLE,
    RESOLUTION_SWEEP,
    ResNetShape,
    make_image,
)
from sod2.zoo.spec import Arrays, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True)
class SkipNetConfig:
    """Backbone shape and recurrent gate sizes (SkipNet uses a 10-unit LSTM)."""

    shape: ResNetShape
    gate_embed: int
    gate_hidden: int


CONFIGS = {
    "small": SkipNetConfig(RESNET_SMALL, gate_embed=8, gate_hidden=10),
    "paper": SkipNetConfig(RESNET_101, gate_embed=10, gate_hidden=10),
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The calibrated torch SkipNet at `scale` (imports torch)."""
    from sod2.zoo.export import to_torch
    from sod2.zoo.nets import skipnet

    config = CONFIGS[scale]
    images = [to_torch(inputs)["image"] for inputs in calibration]
    classes = IMAGENET_CLASSES[scale]["K"]
    return skipnet.build(config.shape, classes, config.gate_embed, config.gate_hidden, images)


ENTRIES = (
    ZooModel(
        name="skipnet",
        family="SkipNet",
        summary="ResNet with a recurrent (LSTM) gate deciding, per residual block, to execute or skip it",
        source="Wang, Yu, Dou, Darrell, Gonzalez: SkipNet: Learning Dynamic Routing in Convolutional Networks (ECCV 2018)",
        dynamism="S+C",
        inputs=(IMAGE,),
        outputs=(
            LOGITS,
            TensorSpec("executed", "bool", ("G",), "per gated block: True if it ran"),
        ),
        symbols=RESOLUTION,
        sweep=RESOLUTION_SWEEP,
        example=RESOLUTION_EXAMPLE,
        constants={
            scale: {**IMAGENET_CLASSES[scale], "G": CONFIGS[scale].shape.block_count - 1}
            for scale in CONFIGS
        },
        input_maker=make_image,
        network_factory=make_network,
        if_counts={scale: config.shape.block_count - 1 for scale, config in CONFIGS.items()},
    ),
)
