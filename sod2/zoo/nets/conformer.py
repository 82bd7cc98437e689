"""Conformer (Gulati et al., Interspeech 2020): convolution-augmented transformer for speech.

Convolutional subsampling: two 3x3 stride-2 convs over (time, mel bins), so T frames become
`floor((floor((T-1)/2) - 1)/2)`, then a linear layer to the model width. Each Conformer block is
a macaron sandwich: half-step feed-forward, multi-head self-attention with relative positional
encoding (Transformer-XL style, as Conformer uses), a convolution module (pointwise conv, GLU,
depthwise conv, BatchNorm, Swish, pointwise conv), another half-step feed-forward, LayerNorm.
Frame lengths give a padding mask: padded frames are ignored as attention keys and zeroed before
the depthwise conv. Batch `N` and frames `T` are dynamic; the relative positions (`2T'-1` of them)
are computed from `T'` at run time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sod2.zoo.conformer import ConformerConfig
from sod2.zoo.nets.init import randomize_norm_layers


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frame counts after two 3x3 stride-2 convs without padding."""
    return torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")


class ConvSubsampling(nn.Module):
    """`[N, T, bins]` -> `[N, T', width]`: two stride-2 convs with ReLU, then a linear layer."""

    def __init__(self, bins: int, width: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, width, 3, 2), nn.ReLU(), nn.Conv2d(width, width, 3, 2), nn.ReLU()
        )
        reduced_bins = ((bins - 1) // 2 - 1) // 2
        self.linear = nn.Linear(width * reduced_bins, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Subsampled frames."""
        x = self.convs(features.unsqueeze(1))
        return self.linear(x.transpose(1, 2).flatten(2))


def relative_positions(frames: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Sinusoidal encodings of the relative distances `T'-1, ..., -(T'-1)`: `[1, 2T'-1, width]`."""
    distances = torch.arange(frames - 1, -frames, -1, dtype=like.dtype)
    frequencies = torch.exp(
        torch.arange(0, width, 2, dtype=like.dtype) * (-math.log(10000.0) / width)
    )
    angles = distances[:, None] * frequencies[None, :]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(1).unsqueeze(0)


def relative_shift(scores: torch.Tensor) -> torch.Tensor:
    """`[N, h, T, 2T-1]` scores by relative distance -> `[N, h, T, T]` scores by key position
    (Transformer-XL's shift: pad a zero column, fold, drop the first row, keep T columns)."""
    batch, heads, frames, distances = scores.shape
    padded = torch.cat([scores.new_zeros(batch, heads, frames, 1), scores], dim=-1)
    folded = padded.reshape(batch, heads, distances + 1, frames)[:, :, 1:]
    return folded.reshape(batch, heads, frames, distances)[:, :, :, : distances // 2 + 1]


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with content (`u`) and position (`v`) biases (Transformer-XL)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_width = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.position = nn.Linear(width, width, bias=False)
        self.content_bias = nn.Parameter(torch.randn(heads, self.head_width) * 0.02)
        self.position_bias = nn.Parameter(torch.randn(heads, self.head_width) * 0.02)
        self.out = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, key_bias: torch.Tensor
    ) -> torch.Tensor:
        """Attention over `[N, T, width]`; `key_bias` `[N, 1, 1, T]` masks padded frames."""
        q, k, v = (part.unflatten(-1, (self.heads, -1)) for part in self.qkv(x).chunk(3, dim=-1))
        p = self.position(positions).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        content = torch.matmul((q + self.content_bias).transpose(1, 2), k.permute(0, 2, 3, 1))
        by_distance = torch.matmul((q + self.position_bias).transpose(1, 2), p.transpose(-2, -1))
        scores = (content + relative_shift(by_distance)) / math.sqrt(self.head_width) + key_bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v.transpose(1, 2))
        return self.out(context.transpose(1, 2).flatten(2))


class ConvolutionModule(nn.Module):
    """Pointwise conv to 2x width, GLU, depthwise conv, BatchNorm, Swish, pointwise conv."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.expand = nn.Conv1d(width, 2 * width, 1)
        self.depthwise = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.batch_norm = nn.BatchNorm1d(width)
        self.project = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`[N, T, width]`; padded frames (`frame_mask` `[N, 1, T]` is 0) do not leak in."""
        hidden = nn.functional.glu(self.expand(self.norm(x).transpose(1, 2)), dim=1) * frame_mask
        hidden = nn.functional.silu(self.batch_norm(self.depthwise(hidden)))
        return self.project(hidden).transpose(1, 2)


def feed_forward(width: int, expansion: int) -> nn.Sequential:
    """LayerNorm, linear to `expansion` x width, Swish, linear back."""
    return nn.Sequential(
        nn.LayerNorm(width),
        nn.Linear(width, expansion * width),
        nn.SiLU(),
        nn.Linear(expansion * width, width),
    )


class ConformerBlock(nn.Module):
    """`x + FF/2`, `+ MHSA`, `+ Conv`, `+ FF/2`, LayerNorm."""

    def __init__(self, width: int, heads: int, kernel: int, expansion: int) -> None:
        super().__init__()
        self.first_ff = feed_forward(width, expansion)
        self.attention_norm = nn.LayerNorm(width)
        self.attention = RelativeSelfAttention(width, heads)
        self.convolution = ConvolutionModule(width, kernel)
        self.second_ff = feed_forward(width, expansion)
        self.final_norm = nn.LayerNorm(width)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        key_bias: torch.Tensor,
        frame_mask: torch.Tensor,
    ) -> torch.Tensor:
        """One block over `[N, T, width]`."""
        x = x + 0.5 * self.first_ff(x)
        x = x + self.attention(self.attention_norm(x), positions, key_bias)
        x = x + self.convolution(x, frame_mask)
        x = x + 0.5 * self.second_ff(x)
        return self.final_norm(x)


class Conformer(nn.Module):
    """Features `[N, T, bins]` and lengths `[N]` -> encodings `[N, T', width]` and lengths `[N]`."""

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.width = config.width
        self.subsampling = ConvSubsampling(config.bins, config.width)
        self.blocks = nn.ModuleList(
            ConformerBlock(config.width, config.heads, config.kernel, config.expansion)
            for _ in range(config.layers)
        )
        randomize_norm_layers(self)

    def forward(
        self, features: torch.Tensor, feature_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded frames and their valid lengths."""
        x = self.subsampling(features) * math.sqrt(self.width)
        lengths = subsampled_lengths(feature_lengths)
        frames = x.shape[1]
        valid = torch.arange(frames)[None, :] < lengths[:, None]
        key_bias = (~valid).to(x.dtype)[:, None, None, :] * torch.finfo(x.dtype).min
        frame_mask = valid.to(x.dtype)[:, None, :]
        positions = relative_positions(frames, self.width, x)
        for block in self.blocks:
            x = block(x, positions, key_bias, frame_mask)
        return x, lengths
