"""The KL autoencoder of Stable Diffusion (Rombach et al., CVPR 2022): VAE encoder and decoder.

Encoder: conv in; per level ResNet blocks (GroupNorm, SiLU, 3x3 conv, twice) and a stride-2
downsample (asymmetric zero pad right and bottom, then 3x3 conv without padding, so any size
halves with floor); a middle of ResNet, single-head self-attention over all positions, ResNet;
GroupNorm, SiLU, conv to the latent moments, and the 1x1 quant conv. The output is the latent mean
times the scaling factor (the deterministic encoding img2img uses).
Decoder: the mirror image, with nearest 2x upsampling and one more ResNet block per level.
Image height and width stay symbolic: floor(H/8) for the latent, 8*h for the decoded image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sod2.zoo.nets.attention import MultiHeadAttention
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.stable_diffusion import LATENT_SCALING, VaeConfig


class ResnetBlock(nn.Module):
    """`shortcut(x) + conv(silu(norm(conv(silu(norm(x))))))`."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, same spatial size."""
        hidden = self.conv1(F.silu(self.norm1(x)))
        hidden = self.conv2(F.silu(self.norm2(hidden)))
        return self.shortcut(x) + hidden


class AttentionBlock(nn.Module):
    """Single-head self-attention over the `h*w` positions of a feature map, residual."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.attention = MultiHeadAttention(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` plus attention over its positions."""
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        attended = self.attention(tokens, tokens, tokens)
        return x + attended.transpose(1, 2).reshape(x.shape)


class Downsample(nn.Module):
    """Pad right and bottom by one, then a 3x3 stride-2 conv: `floor(H/2)` for any `H`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Half the resolution."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x upsampling, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Twice the resolution."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def middle(channels: int, groups: int) -> nn.Sequential:
    """ResNet block, attention, ResNet block."""
    return nn.Sequential(
        ResnetBlock(channels, channels, groups),
        AttentionBlock(channels, groups),
        ResnetBlock(channels, channels, groups),
    )


class VaeEncoder(nn.Module):
    """Image `[N, 3, H, W]` -> scaled latent mean `[N, latent, floor(H/8), floor(W/8)]`."""

    def __init__(self, config: VaeConfig) -> None:
        super().__init__()
        channels, groups = config.channels, config.groups
        self.conv_in = nn.Conv2d(3, channels[0], 3, 1, 1)
        layers: list[nn.Module] = []
        previous = channels[0]
        for level, width in enumerate(channels):
            for _ in range(config.layers_per_block):
                layers.append(ResnetBlock(previous, width, groups))
                previous = width
            if level < len(channels) - 1:
                layers.append(Downsample(width))
        self.down = nn.Sequential(*layers)
        self.middle = middle(previous, groups)
        self.norm_out = nn.GroupNorm(groups, previous, eps=1e-6)
        self.conv_out = nn.Conv2d(previous, 2 * config.latent, 3, 1, 1)
        self.quant_conv = nn.Conv2d(2 * config.latent, 2 * config.latent, 1)
        self.latent = config.latent
        randomize_norm_layers(self)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The latent mean times the scaling factor."""
        x = self.middle(self.down(self.conv_in(image)))
        moments = self.quant_conv(self.conv_out(F.silu(self.norm_out(x))))
        return moments[:, : self.latent] * LATENT_SCALING


class VaeDecoder(nn.Module):
    """Scaled latent `[N, latent, h, w]` -> image `[N, 3, 8h, 8w]`."""

    def __init__(self, config: VaeConfig) -> None:
        super().__init__()
        channels, groups = tuple(reversed(config.channels)), config.groups
        self.post_quant_conv = nn.Conv2d(config.latent, config.latent, 1)
        self.conv_in = nn.Conv2d(config.latent, channels[0], 3, 1, 1)
        self.middle = middle(channels[0], groups)
        layers: list[nn.Module] = []
        previous = channels[0]
        for level, width in enumerate(channels):
            for _ in range(config.layers_per_block + 1):
                layers.append(ResnetBlock(previous, width, groups))
                previous = width
            if level < len(channels) - 1:
                layers.append(Upsample(width))
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(groups, previous, eps=1e-6)
        self.conv_out = nn.Conv2d(previous, 3, 3, 1, 1)
        randomize_norm_layers(self)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoded image."""
        x = self.conv_in(self.post_quant_conv(latent / LATENT_SCALING))
        x = self.up(self.middle(x))
        return self.conv_out(F.silu(self.norm_out(x)))
