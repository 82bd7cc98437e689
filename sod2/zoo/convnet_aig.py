"""Zoo entry: ConvNet-AIG, a ResNet whose every block has an inference gate (`If` per block).

Dynamism: the resolution (`H`, `W`) and, per residual block, an `If` on the gate's hard decision
computed from the block's input. Small: a 4-stage bottleneck ResNet with 5 blocks. Paper:
ResNet-50 (16 blocks), ConvNet-AIG's ImageNet backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sod2.zoo.image_models import (
    IMAGE,
    IMAGENET_CLASSES,
    LOGITS,
    RESNET_50,
    RESOLUTION,
    RESOLUTION_EXAMPLE,
    RESOLUTION_SWEEP,
    ResNetShape,
    make_image,
)
from sod2.zoo.spec import Arrays, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn

SHAPES = {
    "small": ResNetShape(8, (4, 8, 12, 16), (1, 1, 2, 1), bottleneck=True),
    "paper": RESNET_50,
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The calibrated torch ConvNet-AIG at `scale` (imports torch)."""
    from sod2.zoo.export import to_torch
    from sod2.zoo.nets import convnet_aig

    images = [to_torch(inputs)["image"] for inputs in calibration]
    return convnet_aig.build(SHAPES[scale], IMAGENET_CLASSES[scale]["K"], images)


ENTRIES = (
    ZooModel(
        name="convnet_aig",
        family="ConvNet-AIG",
        summary="ResNet in which a per-block gate (pool, 16-unit MLP, 2-way hard argmax) executes or skips each block",
        source="Veit, Belongie: Convolutional Networks with Adaptive Inference Graphs (ECCV 2018)",
        dynamism="S+C",
        inputs=(IMAGE,),
        outputs=(LOGITS, TensorSpec("executed", "bool", ("G",), "per block: True if it ran")),
        symbols=RESOLUTION,
        sweep=RESOLUTION_SWEEP,
        example=RESOLUTION_EXAMPLE,
        constants={
            scale: {**IMAGENET_CLASSES[scale], "G": shape.block_count}
            for scale, shape in SHAPES.items()
        },
        input_maker=make_image,
        network_factory=make_network,
        if_counts={scale: shape.block_count for scale, shape in SHAPES.items()},
    ),
)
