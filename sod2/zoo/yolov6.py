"""Zoo entry: YOLOv6, an anchor-free one-stage detector with its post-processing.

Dynamism: the image height and width (`H`, `W`), and the number of detections `D`, which comes
from a score threshold applied to the top-k anchors (ONNX TopK, NonZero, GatherND).
Small: widths 8..64, one RepVGG block per stage. Paper: YOLOv6-S (width 0.5, depth 0.33 of the
base: widths 32..512, 1/2/4/6/2 RepVGG blocks per stage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sod2.zoo.inputs import natural_images
from sod2.zoo.spec import Arrays, Binding, SweepPoint, SymbolRange, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True)
class YoloConfig:
    """Backbone widths and repeats (stem and four stages), neck widths, classes, top-k size."""

    channels: tuple[int, int, int, int, int]
    repeats: tuple[int, int, int, int, int]
    neck: tuple[int, int]
    neck_repeats: int
    classes: int
    max_detections: int


CONFIGS = {
    "small": YoloConfig(
        (8, 16, 24, 32, 64), (1, 1, 1, 1, 1), (24, 16), 1, classes=8, max_detections=100
    ),
    "paper": YoloConfig(
        (32, 64, 128, 256, 512), (1, 2, 4, 6, 2), (128, 64), 4, classes=80, max_detections=300
    ),
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The calibrated torch YOLOv6 at `scale` (imports torch)."""
    from sod2.zoo.export import to_torch
    from sod2.zoo.nets import yolov6

    images = [to_torch(inputs)["image"] for inputs in calibration]
    return yolov6.build(CONFIGS[scale], images)


def make_image(binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]) -> Arrays:
    """One natural-looking image at `H` x `W`."""
    return {"image": natural_images(rng, 1, binding["H"], binding["W"])}


ENTRIES = (
    ZooModel(
        name="yolov6",
        family="YOLO-V6",
        summary="EfficientRep backbone, Rep-PAN neck, decoupled anchor-free head, score threshold and top-k",
        source="Li et al.: YOLOv6: A Single-Stage Object Detection Framework for Industrial Applications (2022)",
        dynamism="S",
        inputs=(TensorSpec("image", "float32", (1, 3, "H", "W"), "one normalized RGB image"),),
        outputs=(
            TensorSpec("boxes", "float32", ("D", 4), "x1, y1, x2, y2 in pixels"),
            TensorSpec("scores", "float32", ("D",), "detection scores above the threshold"),
            TensorSpec("classes", "int64", ("D",), "class ids"),
        ),
        symbols=(
            SymbolRange("H", 64, 1280, "image height in pixels"),
            SymbolRange("W", 64, 1280, "image width in pixels"),
        ),
        sweep=(
            SweepPoint.of(31, H=224, W=224),
            SweepPoint.of(32, H=320, W=480),
            SweepPoint.of(33, H=416, W=416),
            SweepPoint.of(34, H=375, W=500),
            SweepPoint.of(35, H=512, W=512),
            SweepPoint.of(36, H=640, W=640),
        ),
        example=SweepPoint.of(0, H=288, W=352),
        constants={scale: {"classes": config.classes} for scale, config in CONFIGS.items()},
        input_maker=make_image,
        network_factory=make_network,
    ),
)
