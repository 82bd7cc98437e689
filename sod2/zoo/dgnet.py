"""Zoo entry: DGNet, dual (channel and spatial) dynamic gating in a bottleneck ResNet.

Dynamism: control flow only, as in the paper's table: a fixed 224x224 image; which middle
channels and which output positions of each block compute depends on the image (masks), and a
block whose gates are all off is skipped (`If` per block). Small: a 5-block bottleneck ResNet.
Paper: ResNet-101 (33 blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sod2.zoo.image_models import (
    FIXED_IMAGE,
    IMAGENET_CLASSES,
    LOGITS,
    RESNET_101,
    ResNetShape,
    make_image,
)
from sod2.zoo.spec import Arrays, SweepPoint, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn

SHAPES = {
    "small": ResNetShape(8, (4, 8, 12, 16), (1, 1, 2, 1), bottleneck=True),
    "paper": RESNET_101,
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The calibrated torch DGNet at `scale` (imports torch)."""
    from sod2.zoo.export import to_torch
    from sod2.zoo.nets import dgnet

    images = [to_torch(inputs)["image"] for inputs in calibration]
    return dgnet.build(SHAPES[scale], IMAGENET_CLASSES[scale]["K"], images)


ENTRIES = (
    ZooModel(
        name="dgnet",
        family="DGNet",
        summary="bottleneck ResNet with a channel gate and a spatial gate per block; a block with no active channel or position is skipped",
        source="Li, Li, Yuan, Chen, Wang, Wang, Jiao: Dynamic Dual Gating Neural Networks (ICCV 2021)",
        dynamism="C",
        inputs=(FIXED_IMAGE,),
        outputs=(
            LOGITS,
            TensorSpec("computed", "bool", ("G",), "per block: True if its branch computed"),
        ),
        symbols=(),
        sweep=tuple(SweepPoint.of(seed) for seed in range(21, 28)),
        example=SweepPoint.of(0),
        constants={
            scale: {**IMAGENET_CLASSES[scale], "G": shape.block_count}
            for scale, shape in SHAPES.items()
        },
        input_maker=make_image,
        network_factory=make_network,
        if_counts={scale: shape.block_count for scale, shape in SHAPES.items()},
    ),
)
