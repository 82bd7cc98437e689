"""Zoo entry: BlockDrop, a policy network choosing which residual blocks run (`If` per block).

Dynamism: the resolution (`H`, `W`) and, per residual block, an `If` on the policy's bit for it,
computed from a low-resolution view of the image. Small: an 8-block basic ResNet and a 4-block
policy at 64x64. Paper: ResNet-101 (33 blocks) with a ResNet-10 policy at 112x112, as BlockDrop
uses on ImageNet.
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
class BlockDropConfig:
    """The main ResNet, the policy ResNet and the policy's input resolution."""

    shape: ResNetShape
    policy: ResNetShape
    policy_resolution: int


CONFIGS = {
    "small": BlockDropConfig(
        RESNET_SMALL, ResNetShape(8, (8, 16, 16, 16), (1, 1, 1, 1), False), 64
    ),
    "paper": BlockDropConfig(
        RESNET_101, ResNetShape(64, (64, 128, 256, 512), (1, 1, 1, 1), False), 112
    ),
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The calibrated torch BlockDrop at `scale` (imports torch)."""
    from sod2.zoo.export import to_torch
    from sod2.zoo.nets import blockdrop

    config = CONFIGS[scale]
    images = [to_torch(inputs)["image"] for inputs in calibration]
    classes = IMAGENET_CLASSES[scale]["K"]
    return blockdrop.build(config.shape, config.policy, config.policy_resolution, classes, images)


ENTRIES = (
    ZooModel(
        name="blockdrop",
        family="BlockDrop",
        summary="ResNet whose residual blocks are kept or dropped by a policy network run on a low-resolution view",
        source="Wu, Nagarajan, Kumar, Rennie, Davis, Grauman, Feris: BlockDrop: Dynamic Inference Paths in Residual Networks (CVPR 2018)",
        dynamism="S+C",
        inputs=(IMAGE,),
        outputs=(LOGITS, TensorSpec("policy", "bool", ("G",), "per block: True if kept")),
        symbols=RESOLUTION,
        sweep=RESOLUTION_SWEEP,
        example=RESOLUTION_EXAMPLE,
        constants={
            scale: {**IMAGENET_CLASSES[scale], "G": config.shape.block_count}
            for scale, config in CONFIGS.items()
        },
        input_maker=make_image,
        network_factory=make_network,
        if_counts={scale: config.shape.block_count for scale, config in CONFIGS.items()},
    ),
)
