"""CodeBERT (Feng et al., 2020): a RoBERTa-base encoder pre-trained on code and text.

RoBERTa embeddings (word, position, one token type) where position ids count only real tokens:
`cumsum(id != pad) * (id != pad) + pad`, so padding keeps the padding position; post-LayerNorm
transformer layers with GELU; the attention mask turns padded keys into a large negative bias;
a tanh pooler over the first token. Batch `N` and sequence length `L` are dynamic.
"""

from __future__ import annotations

import torch
from torch import nn

from sod2.zoo.codebert import CodeBertConfig
from sod2.zoo.nets.attention import MultiHeadAttention
from sod2.zoo.nets.init import randomize_norm_layers

PAD_ID = 1


class EncoderLayer(nn.Module):
    """`x = ln(x + attn(x))`, then `x = ln(x + ffn(x))`."""

    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(width, heads)
        self.attention_norm = nn.LayerNorm(width, eps=1e-5)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Linear(ffn, width))
        self.ffn_norm = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """One layer over `[N, L, width]`; `key_bias` is `[N, 1, 1, L]`."""
        x = self.attention_norm(x + self.attention(x, x, x, key_bias))
        return self.ffn_norm(x + self.ffn(x))


class CodeBert(nn.Module):
    """Ids and attention mask `[N, L]` -> hidden states `[N, L, width]`, pooled `[N, width]`."""

    def __init__(self, config: CodeBertConfig) -> None:
        super().__init__()
        self.words = nn.Embedding(config.vocab, config.width, padding_idx=PAD_ID)
        self.positions = nn.Embedding(config.positions, config.width, padding_idx=PAD_ID)
        self.token_type = nn.Parameter(torch.randn(config.width) * 0.02)
        self.embedding_norm = nn.LayerNorm(config.width, eps=1e-5)
        self.layers = nn.ModuleList(
            EncoderLayer(config.width, config.heads, config.ffn) for _ in range(config.layers)
        )
        self.pooler = nn.Linear(config.width, config.width)
        randomize_norm_layers(self)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word + position + token-type embeddings, normalized."""
        real = (input_ids != PAD_ID).to(torch.int64)
        position_ids = torch.cumsum(real, dim=1) * real + PAD_ID
        x = self.words(input_ids) + self.positions(position_ids) + self.token_type
        return self.embedding_norm(x)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states and the pooled first-token state."""
        x = self.embed(input_ids)
        keep = attention_mask[:, None, None, :].to(x.dtype)
        key_bias = (1.0 - keep) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, key_bias)
        return x, torch.tanh(self.pooler(x[:, 0]))
