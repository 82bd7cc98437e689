"""Zoo entries: the three networks of Segment Anything, each its own ONNX model.

- `sam_image_encoder`: one image, any size (`H`, `W`), to the image embedding (`H/16 x W/16`).
- `sam_prompt_encoder`: `N` prompt sets of `P` points and `B` boxes, plus a low-resolution mask
  prompt (`H x W`, 4x the embedding grid), to sparse and dense prompt embeddings.
- `sam_mask_decoder`: the image embedding (`H x W` grid), `N` prompt sets of `T` prompt tokens,
  to 4 masks per prompt set (`4H x 4W`) and their predicted IoU.
SAM runs the image encoder once per image and the two light networks once per prompt, so they are
separate entries, as in SAM's own deployment (its ONNX export covers the decoder side only).
Small: ViT width 32, 2 blocks, embedding width 32. Paper: SAM ViT-B (width 768, 12 blocks, global
attention in blocks 2, 5, 8, 11, window 14) and the 256-wide prompt encoder and mask decoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sod2.zoo.inputs import natural_images, prompt_boxes, prompt_points
from sod2.zoo.spec import Arrays, Binding, SweepPoint, SymbolRange, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn

IMAGE_SIZE = 1024
SOURCE = "Kirillov et al.: Segment Anything (ICCV 2023)"


@dataclass(frozen=True, slots=True)
class ImageEncoderConfig:
    """ViT width, depth, heads, window, global-attention blocks, trained grid, output channels."""

    dim: int
    depth: int
    heads: int
    window: int
    global_blocks: tuple[int, ...]
    grid: int
    out_channels: int


@dataclass(frozen=True, slots=True)
class PromptConfig:
    """Embedding width, decoder heads, depth, MLP width and IoU-head width."""

    channels: int
    heads: int
    depth: int
    mlp_dim: int
    iou_hidden: int


IMAGE_CONFIGS = {
    "small": ImageEncoderConfig(
        dim=32, depth=2, heads=2, window=7, global_blocks=(1,), grid=16, out_channels=32
    ),
    "paper": ImageEncoderConfig(
        dim=768,
        depth=12,
        heads=12,
        window=14,
        global_blocks=(2, 5, 8, 11),
        grid=64,
        out_channels=256,
    ),
}
PROMPT_CONFIGS = {
    "small": PromptConfig(channels=32, heads=2, depth=2, mlp_dim=64, iou_hidden=32),
    "paper": PromptConfig(channels=256, heads=8, depth=2, mlp_dim=2048, iou_hidden=256),
}
CHANNELS = {scale: {"C": config.channels} for scale, config in PROMPT_CONFIGS.items()}
PROMPT_SETS = SymbolRange("N", 1, 8, "prompt sets decoded together")


def _image_encoder(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    from sod2.zoo.nets.sam import ImageEncoder

    return ImageEncoder(IMAGE_CONFIGS[scale])


def _prompt_encoder(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    from sod2.zoo.nets.sam import PromptEncoder

    return PromptEncoder(PROMPT_CONFIGS[scale])


def _mask_decoder(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    from sod2.zoo.nets.sam import MaskDecoder

    return MaskDecoder(PROMPT_CONFIGS[scale])


def make_image(binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]) -> Arrays:
    """One natural-looking image."""
    return {"image": natural_images(rng, 1, binding["H"], binding["W"])}


def make_prompts(
    binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]
) -> Arrays:
    """Points with labels, boxes, a mask prompt, and which prompt sets use their mask."""
    count = binding["N"]
    coords, labels = prompt_points(rng, count, binding["P"], IMAGE_SIZE)
    mask = rng.normal(0.0, 4.0, size=(count, 1, binding["H"], binding["W"])).astype(np.float32)
    has_mask = (np.arange(count) % 2).astype(np.float32)
    return {
        "point_coords": coords,
        "point_labels": labels,
        "boxes": prompt_boxes(rng, count, binding["B"], IMAGE_SIZE),
        "mask_input": mask,
        "has_mask_input": has_mask,
    }


def make_decoder_inputs(
    binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]
) -> Arrays:
    """An image embedding and prompt embeddings of about the scale the encoders produce."""
    channels, grid = constants["C"], (binding["H"], binding["W"])
    return {
        "image_embeddings": rng.normal(0.0, 1.0, size=(1, channels, *grid)).astype(np.float32),
        "sparse_prompt_embeddings": rng.normal(
            0.0, 1.0, size=(binding["N"], binding["T"], channels)
        ).astype(np.float32),
        "dense_prompt_embeddings": rng.normal(
            0.0, 0.5, size=(binding["N"], channels, *grid)
        ).astype(np.float32),
    }


IMAGE_ENCODER = ZooModel(
    name="sam_image_encoder",
    family="SegmentAnything",
    summary="ViT image encoder: windowed and global attention with relative positions, conv neck",
    source=SOURCE,
    dynamism="S",
    inputs=(TensorSpec("image", "float32", (1, 3, "H", "W"), "one normalized RGB image"),),
    outputs=(
        TensorSpec(
            "image_embeddings", "float32", (1, "C", "floor(H/16)", "floor(W/16)"), "image embedding"
        ),
    ),
    symbols=(
        SymbolRange("H", 64, 1024, "image height in pixels"),
        SymbolRange("W", 64, 1024, "image width in pixels"),
    ),
    sweep=(
        SweepPoint.of(91, H=256, W=256),
        SweepPoint.of(92, H=384, W=512),
        SweepPoint.of(93, H=512, W=512),
        SweepPoint.of(94, H=640, W=480),
        SweepPoint.of(95, H=768, W=768),
        SweepPoint.of(96, H=1024, W=1024),
    ),
    example=SweepPoint.of(0, H=320, W=400),
    constants=CHANNELS,
    input_maker=make_image,
    network_factory=_image_encoder,
)

PROMPT_ENCODER = ZooModel(
    name="sam_prompt_encoder",
    family="SegmentAnything",
    summary="prompt encoder: Fourier features of points and box corners, label embeddings, mask downscaling",
    source=SOURCE,
    dynamism="S",
    inputs=(
        TensorSpec(
            "point_coords", "float32", ("N", "P", 2), "point prompts, pixels of the 1024 frame"
        ),
        TensorSpec("point_labels", "int64", ("N", "P"), "1 foreground, 0 background, -1 padding"),
        TensorSpec("boxes", "float32", ("N", "B", 4), "box prompts x1, y1, x2, y2"),
        TensorSpec("mask_input", "float32", ("N", 1, "H", "W"), "low-resolution mask logits"),
        TensorSpec("has_mask_input", "float32", ("N",), "1 where the mask prompt is used"),
    ),
    outputs=(
        TensorSpec(
            "sparse_embeddings",
            "float32",
            ("N", "P + 2*B", "C"),
            "one token per point and box corner",
        ),
        TensorSpec(
            "dense_embeddings",
            "float32",
            ("N", "C", "floor(H/4)", "floor(W/4)"),
            "mask prompt embedding",
        ),
    ),
    symbols=(
        PROMPT_SETS,
        SymbolRange("P", 1, 32, "points per prompt set"),
        SymbolRange("B", 1, 8, "boxes per prompt set"),
        SymbolRange("H", 16, 256, "mask prompt height (4x the embedding grid)"),
        SymbolRange("W", 16, 256, "mask prompt width (4x the embedding grid)"),
    ),
    sweep=(
        SweepPoint.of(101, N=1, P=1, B=1, H=64, W=64),
        SweepPoint.of(102, N=2, P=3, B=1, H=96, W=128),
        SweepPoint.of(103, N=1, P=8, B=2, H=128, W=128),
        SweepPoint.of(104, N=4, P=5, B=4, H=160, W=120),
        SweepPoint.of(105, N=2, P=16, B=3, H=192, W=192),
        SweepPoint.of(106, N=1, P=32, B=8, H=256, W=256),
    ),
    example=SweepPoint.of(0, N=2, P=5, B=3, H=112, W=136),
    constants=CHANNELS,
    input_maker=make_prompts,
    network_factory=_prompt_encoder,
)

MASK_DECODER = ZooModel(
    name="sam_mask_decoder",
    family="SegmentAnything",
    summary="two-way transformer mask decoder with 4x upscaling, hypernetwork masks and IoU head",
    source=SOURCE,
    dynamism="S",
    inputs=(
        TensorSpec("image_embeddings", "float32", (1, "C", "H", "W"), "image embedding"),
        TensorSpec("sparse_prompt_embeddings", "float32", ("N", "T", "C"), "prompt tokens"),
        TensorSpec(
            "dense_prompt_embeddings", "float32", ("N", "C", "H", "W"), "dense prompt embedding"
        ),
    ),
    outputs=(
        TensorSpec("masks", "float32", ("N", 4, "4*H", "4*W"), "mask logits"),
        TensorSpec("iou_predictions", "float32", ("N", 4), "predicted IoU per mask"),
    ),
    symbols=(
        PROMPT_SETS,
        SymbolRange("T", 1, 64, "prompt tokens per prompt set (points + 2 x boxes)"),
        SymbolRange("H", 4, 64, "embedding grid height (image height / 16)"),
        SymbolRange("W", 4, 64, "embedding grid width (image width / 16)"),
    ),
    sweep=(
        SweepPoint.of(111, N=1, T=2, H=16, W=16),
        SweepPoint.of(112, N=2, T=5, H=24, W=32),
        SweepPoint.of(113, N=1, T=12, H=32, W=32),
        SweepPoint.of(114, N=4, T=7, H=40, W=30),
        SweepPoint.of(115, N=2, T=22, H=48, W=48),
        SweepPoint.of(116, N=1, T=48, H=64, W=64),
    ),
    example=SweepPoint.of(0, N=2, T=6, H=20, W=26),
    constants=CHANNELS,
    input_maker=make_decoder_inputs,
    network_factory=_mask_decoder,
)

ENTRIES = (IMAGE_ENCODER, PROMPT_ENCODER, MASK_DECODER)
