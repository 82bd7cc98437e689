"""Zoo entries: the parts of Stable Diffusion the paper runs, each its own ONNX model.

- `sd_text_encoder`: the CLIP text encoder; dynamic batch `N` and text length `L` (up to 77).
- `sd_vae_encoder`: image to latent; dynamic `N`, image height `H` and width `W`.
- `sd_vae_decoder`: latent to image; dynamic `N` and latent height `H` and width `W` (the image is
  8H x 8W).
The parts are separate entries because they are separate networks that a pipeline calls one after
another, each with its own inputs, as in Stable Diffusion's own ONNX exports.
Small: widths 16..64, one block per level. Paper: Stable Diffusion 1.x sizes (CLIP ViT-L/14 text
encoder, width 768, 12 layers; VAE widths 128, 256, 512, 512 with 2 ResNet blocks per level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sod2.zoo.inputs import clip_token_ids, natural_images
from sod2.zoo.spec import Arrays, Binding, SweepPoint, SymbolRange, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn

LATENT_SCALING = 0.18215
SOURCE = "Rombach, Blattmann, Lorenz, Esser, Ommer: High-Resolution Image Synthesis with Latent Diffusion Models (CVPR 2022)"


@dataclass(frozen=True, slots=True)
class TextEncoderConfig:
    """CLIP text transformer: vocabulary, positions, width, layers, heads."""

    vocab: int
    positions: int
    width: int
    layers: int
    heads: int


@dataclass(frozen=True, slots=True)
class VaeConfig:
    """KL autoencoder: widths per level, ResNet blocks per level, GroupNorm groups, latent channels."""

    channels: tuple[int, ...]
    layers_per_block: int
    groups: int
    latent: int


TEXT_CONFIGS = {
    "small": TextEncoderConfig(vocab=1000, positions=77, width=64, layers=2, heads=4),
    "paper": TextEncoderConfig(vocab=49408, positions=77, width=768, layers=12, heads=12),
}
VAE_CONFIGS = {
    "small": VaeConfig(channels=(16, 32, 48, 48), layers_per_block=1, groups=8, latent=4),
    "paper": VaeConfig(channels=(128, 256, 512, 512), layers_per_block=2, groups=32, latent=4),
}
BATCH = SymbolRange("N", 1, 4, "batch size")


def _text_encoder(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    from sod2.zoo.nets.clip_text import ClipTextEncoder

    return ClipTextEncoder(TEXT_CONFIGS[scale])


def _vae_encoder(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    from sod2.zoo.nets.vae import VaeEncoder

    return VaeEncoder(VAE_CONFIGS[scale])


def _vae_decoder(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    from sod2.zoo.nets.vae import VaeDecoder

    return VaeDecoder(VAE_CONFIGS[scale])


def make_prompts(
    binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]
) -> Arrays:
    """CLIP token ids: start token, text, end token, padded with the end token."""
    return {"input_ids": clip_token_ids(rng, binding["N"], binding["L"], constants["vocab"])}


def make_images(binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]) -> Arrays:
    """A batch of natural-looking images."""
    return {"image": natural_images(rng, binding["N"], binding["H"], binding["W"])}


def make_latents(
    binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]
) -> Arrays:
    """Scaled latents as the encoder or the diffusion model produce them (about unit variance)."""
    shape = (binding["N"], 4, binding["H"], binding["W"])
    return {"latent": rng.normal(0.0, 1.0, size=shape).astype("float32")}


TEXT_ENCODER = ZooModel(
    name="sd_text_encoder",
    family="StableDiffusion",
    summary="CLIP text encoder: causal pre-LN transformer, pooled at the end token",
    source=SOURCE
    + "; Radford et al.: Learning Transferable Visual Models From Natural Language Supervision (ICML 2021)",
    dynamism="S",
    inputs=(
        TensorSpec(
            "input_ids", "int64", ("N", "L"), "CLIP token ids (start, text, end, end padding)"
        ),
    ),
    outputs=(
        TensorSpec("last_hidden_state", "float32", ("N", "L", "width"), "token states"),
        TensorSpec("pooled_output", "float32", ("N", "width"), "state at the end token"),
    ),
    symbols=(BATCH, SymbolRange("L", 2, 77, "text length in tokens")),
    sweep=(
        SweepPoint.of(51, N=1, L=8),
        SweepPoint.of(52, N=2, L=16),
        SweepPoint.of(53, N=1, L=32),
        SweepPoint.of(54, N=4, L=48),
        SweepPoint.of(55, N=2, L=64),
        SweepPoint.of(56, N=1, L=77),
    ),
    example=SweepPoint.of(0, N=2, L=20),
    constants={scale: {"vocab": c.vocab, "width": c.width} for scale, c in TEXT_CONFIGS.items()},
    input_maker=make_prompts,
    network_factory=_text_encoder,
)

VAE_ENCODER = ZooModel(
    name="sd_vae_encoder",
    family="StableDiffusion",
    summary="KL-VAE encoder: ResNet blocks, 3 stride-2 downsamples, mid self-attention, latent mean",
    source=SOURCE,
    dynamism="S",
    inputs=(TensorSpec("image", "float32", ("N", 3, "H", "W"), "RGB images"),),
    outputs=(
        TensorSpec("latent", "float32", ("N", 4, "floor(H/8)", "floor(W/8)"), "scaled latent mean"),
    ),
    symbols=(
        BATCH,
        SymbolRange("H", 32, 1024, "image height in pixels"),
        SymbolRange("W", 32, 1024, "image width in pixels"),
    ),
    sweep=(
        SweepPoint.of(61, N=1, H=128, W=128),
        SweepPoint.of(62, N=2, H=192, W=256),
        SweepPoint.of(63, N=1, H=256, W=256),
        SweepPoint.of(64, N=1, H=320, W=448),
        SweepPoint.of(65, N=1, H=384, W=384),
        SweepPoint.of(66, N=1, H=512, W=512),
    ),
    example=SweepPoint.of(0, N=2, H=96, W=136),
    constants={"small": {}, "paper": {}},
    input_maker=make_images,
    network_factory=_vae_encoder,
)

VAE_DECODER = ZooModel(
    name="sd_vae_decoder",
    family="StableDiffusion",
    summary="KL-VAE decoder: mid self-attention, ResNet blocks, 3 nearest 2x upsamples",
    source=SOURCE,
    dynamism="S",
    inputs=(TensorSpec("latent", "float32", ("N", 4, "H", "W"), "scaled latents"),),
    outputs=(TensorSpec("image", "float32", ("N", 3, "8*H", "8*W"), "decoded RGB images"),),
    symbols=(
        BATCH,
        SymbolRange("H", 4, 128, "latent height (image height / 8)"),
        SymbolRange("W", 4, 128, "latent width (image width / 8)"),
    ),
    sweep=(
        SweepPoint.of(71, N=1, H=16, W=16),
        SweepPoint.of(72, N=2, H=24, W=32),
        SweepPoint.of(73, N=1, H=32, W=32),
        SweepPoint.of(74, N=1, H=40, W=56),
        SweepPoint.of(75, N=1, H=48, W=48),
        SweepPoint.of(76, N=1, H=64, W=64),
    ),
    example=SweepPoint.of(0, N=2, H=12, W=17),
    constants={"small": {}, "paper": {}},
    input_maker=make_latents,
    network_factory=_vae_decoder,
)

ENTRIES = (TEXT_ENCODER, VAE_ENCODER, VAE_DECODER)
