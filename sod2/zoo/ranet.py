"""Zoo entry: RaNet, resolution-adaptive sub-networks with confidence-based early exits.

Dynamism: the resolution (`H`, `W`) and two nested `If`s: exit after the 1/4-resolution
sub-network when its confidence is high enough, else after the 1/2-resolution one, else run the
full-resolution one. Small: narrow sub-networks with 2 dense layers per stage. Paper: wide
sub-networks with many dense layers, the low-resolution ones the widest, as in RaNet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sod2.zoo.image_models import (
    IMAGE,
    IMAGENET_CLASSES,
    LOGITS,
    RESOLUTION,
    RESOLUTION_EXAMPLE,
    RESOLUTION_SWEEP,
    make_image,
)
from sod2.zoo.spec import Arrays, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True)
class RaNetConfig:
    """Per sub-network (1/4, 1/2, full resolution): stem width, dense layers per stage, growth."""

    widths: tuple[int, int, int]
    layers: tuple[int, int, int]
    growths: tuple[int, int, int]


CONFIGS = {
    "small": RaNetConfig(widths=(16, 12, 8), layers=(2, 2, 2), growths=(8, 6, 4)),
    "paper": RaNetConfig(widths=(256, 128, 64), layers=(12, 8, 4), growths=(64, 48, 32)),
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The calibrated torch RaNet at `scale` (imports torch)."""
    from sod2.zoo.export import to_torch
    from sod2.zoo.nets import ranet

    config = CONFIGS[scale]
    images = [to_torch(inputs)["image"] for inputs in calibration]
    classes = IMAGENET_CLASSES[scale]["K"]
    return ranet.build(config.widths, config.layers, config.growths, classes, images)


ENTRIES = (
    ZooModel(
        name="ranet",
        family="RaNet",
        summary="sub-networks at 1/4, 1/2 and full resolution; stops at the first classifier that is confident enough",
        source="Yang, Huang, Song, Li, Ding, Huang, Wang: Resolution Adaptive Networks for Efficient Inference (CVPR 2020)",
        dynamism="S+C",
        inputs=(IMAGE,),
        outputs=(LOGITS, TensorSpec("exit", "int64", (), "the exit taken: 0, 1 or 2")),
        symbols=RESOLUTION,
        sweep=RESOLUTION_SWEEP,
        example=RESOLUTION_EXAMPLE,
        constants=IMAGENET_CLASSES,
        input_maker=make_image,
        network_factory=make_network,
        if_counts={"small": 2, "paper": 2},
    ),
)
