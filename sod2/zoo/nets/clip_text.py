"""The CLIP text encoder used by Stable Diffusion (Radford et al., 2021).

Token and learned position embeddings, pre-LayerNorm transformer blocks with causal self-attention
and QuickGELU MLPs, a final LayerNorm. The pooled output is the hidden state at the end token,
found as the position of the largest token id (the end token has the largest id in CLIP's
vocabulary), a data-dependent gather. The text length `L` is dynamic up to the 77 positions.
"""

from __future__ import annotations

import torch
from torch import nn

from sod2.zoo.nets.attention import MultiHeadAttention
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.stable_diffusion import TextEncoderConfig


class QuickGELU(nn.Module):
    """`x * sigmoid(1.702 x)`, CLIP's approximation of GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise QuickGELU."""
        return x * torch.sigmoid(1.702 * x)


class TextBlock(nn.Module):
    """`x + attn(ln(x))`, then `x + mlp(ln(x))`."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = MultiHeadAttention(width, heads)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        """One block over `[N, L, width]` with the additive causal mask `[L, L]`."""
        normed = self.attention_norm(x)
        x = x + self.attention(normed, normed, normed, causal)
        return x + self.mlp(self.mlp_norm(x))


class ClipTextEncoder(nn.Module):
    """Token ids `[N, L]` -> hidden states `[N, L, width]` and pooled states `[N, width]`."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(config.vocab, config.width)
        self.positions = nn.Parameter(torch.randn(config.positions, config.width) * 0.01)
        self.blocks = nn.ModuleList(
            TextBlock(config.width, config.heads) for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(config.width)
        randomize_norm_layers(self)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states and the pooled (end-token) states."""
        length = input_ids.shape[1]
        x = self.tokens(input_ids) + self.positions[:length]
        causal = torch.full((length, length), float("-inf"), dtype=x.dtype).triu(1)
        for block in self.blocks:
            x = block(x, causal)
        x = self.final_norm(x)
        rows = torch.arange(x.shape[0])
        return x, x[rows, input_ids.argmax(dim=-1)]
