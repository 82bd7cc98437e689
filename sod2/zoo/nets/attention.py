"""Multi-head scaled dot-product attention, written out as matmul and softmax.

`softmax(Q K^T / sqrt(d) + bias) V` per head, with Q, K, V linear projections of the query, key
and value sequences `[N, L, dim]`. Reshapes go through `unflatten`/`flatten` so that sequence
lengths stay symbolic in the export. `bias` is an additive mask (causal, padding) broadcastable to
`[N, heads, Lq, Lk]`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MultiHeadAttention(nn.Module):
    """Attention of `heads` heads over an inner width `inner_dim` (default `dim`)."""

    def __init__(
        self, dim: int, heads: int, *, kv_dim: int | None = None, inner_dim: int | None = None
    ) -> None:
        super().__init__()
        inner = inner_dim or dim
        self.heads = heads
        self.scale = 1.0 / math.sqrt(inner // heads)
        self.query = nn.Linear(dim, inner)
        self.key = nn.Linear(kv_dim or dim, inner)
        self.value = nn.Linear(kv_dim or dim, inner)
        self.out = nn.Linear(inner, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, L, heads*d]` -> `[N, heads, L, d]`."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from `query` `[N, Lq, dim]` to `key`/`value` `[N, Lk, kv_dim]`."""
        q = self.split_heads(self.query(query))
        k = self.split_heads(self.key(key))
        v = self.split_heads(self.value(value))
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if bias is not None:
            scores = scores + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out(context.transpose(1, 2).flatten(2))
