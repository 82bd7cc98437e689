"""Metadata shared by the image classifiers of the zoo (SkipNet, ConvNet-AIG, BlockDrop, RaNet,
DGNet): their ResNet shapes, the image input, the resolution symbols and the resolution sweep.

The control-flow networks take one image at a time (`N` = 1): each `If` decides for the whole
tensor, exactly as a gate decides for one image. Numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sod2.zoo.inputs import natural_images
from sod2.zoo.spec import Arrays, Binding, SweepPoint, SymbolRange, TensorSpec

IMAGE = TensorSpec("image", "float32", (1, 3, "H", "W"), "one normalized RGB image")
FIXED_IMAGE = TensorSpec("image", "float32", (1, 3, 224, 224), "one normalized 224x224 RGB image")
LOGITS = TensorSpec("logits", "float32", (1, "K"), "class logits (K classes)")
RESOLUTION = (
    SymbolRange("H", 64, 1024, "image height in pixels"),
    SymbolRange("W", 64, 1024, "image width in pixels"),
)
RESOLUTION_SWEEP = (
    SweepPoint.of(11, H=224, W=224),
    SweepPoint.of(12, H=256, W=320),
    SweepPoint.of(13, H=320, W=320),
    SweepPoint.of(14, H=384, W=448),
    SweepPoint.of(15, H=480, W=480),
    SweepPoint.of(16, H=512, W=640),
    SweepPoint.of(17, H=640, W=640),
)
RESOLUTION_EXAMPLE = SweepPoint.of(0, H=256, W=288)
IMAGENET_CLASSES = {"small": {"K": 10}, "paper": {"K": 1000}}


@dataclass(frozen=True, slots=True)
class ResNetShape:
    """The layout of a ResNet: stem width, per-stage widths and depths, block kind."""

    stem_channels: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    bottleneck: bool

    @property
    def block_count(self) -> int:
        """The number of residual blocks."""
        return sum(self.depths)


RESNET_SMALL = ResNetShape(8, (8, 16, 24, 32), (2, 2, 2, 2), bottleneck=False)
RESNET_50 = ResNetShape(64, (64, 128, 256, 512), (3, 4, 6, 3), bottleneck=True)
RESNET_101 = ResNetShape(64, (64, 128, 256, 512), (3, 4, 23, 3), bottleneck=True)


def make_image(binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]) -> Arrays:
    """One natural-looking image at the binding's `H` x `W` (224 x 224 when unbound)."""
    height, width = binding.get("H", 224), binding.get("W", 224)
    return {"image": natural_images(rng, 1, height, width)}
