"""Zoo entry: CodeBERT, a RoBERTa-style encoder with an attention mask.

Dynamism: batch `N` and sequence length `L` (up to 512 tokens). Small: width 64, 2 layers,
a 1,000-token vocabulary. Paper: RoBERTa-base (width 768, 12 layers, 12 heads, the 50,265-token
vocabulary), as CodeBERT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sod2.zoo.inputs import attention_mask, padded_lengths, roberta_token_ids
from sod2.zoo.spec import Arrays, Binding, SweepPoint, SymbolRange, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True)
class CodeBertConfig:
    """Vocabulary, positions (512 tokens + 2 offsets), width, layers, heads, FFN width."""

    vocab: int
    positions: int
    width: int
    layers: int
    heads: int
    ffn: int


CONFIGS = {
    "small": CodeBertConfig(vocab=1000, positions=514, width=64, layers=2, heads=4, ffn=128),
    "paper": CodeBertConfig(vocab=50265, positions=514, width=768, layers=12, heads=12, ffn=3072),
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The seeded torch CodeBERT at `scale` (imports torch)."""
    from sod2.zoo.nets.codebert import CodeBert

    return CodeBert(CONFIGS[scale])


def make_tokens(binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]) -> Arrays:
    """A padded batch: ids within the vocabulary and the matching attention mask."""
    lengths = padded_lengths(rng, binding["N"], binding["L"])
    return {
        "input_ids": roberta_token_ids(rng, lengths, binding["L"], constants["vocab"]),
        "attention_mask": attention_mask(lengths, binding["L"]),
    }


ENTRIES = (
    ZooModel(
        name="codebert",
        family="CodeBERT",
        summary="RoBERTa encoder (post-LN transformer) with padding-aware positions and attention mask, tanh pooler",
        source="Feng et al.: CodeBERT: A Pre-Trained Model for Programming and Natural Languages (EMNLP 2020 Findings)",
        dynamism="S",
        inputs=(
            TensorSpec(
                "input_ids", "int64", ("N", "L"), "token ids, 0 = <s>, 2 = </s>, 1 = padding"
            ),
            TensorSpec("attention_mask", "int64", ("N", "L"), "1 for real tokens, 0 for padding"),
        ),
        outputs=(
            TensorSpec(
                "last_hidden_state", "float32", ("N", "L", "width"), "contextual token states"
            ),
            TensorSpec("pooler_output", "float32", ("N", "width"), "tanh-pooled first token"),
        ),
        symbols=(
            SymbolRange("N", 1, 16, "batch size"),
            SymbolRange("L", 2, 512, "sequence length in tokens"),
        ),
        sweep=(
            SweepPoint.of(41, N=1, L=16),
            SweepPoint.of(42, N=4, L=32),
            SweepPoint.of(43, N=2, L=64),
            SweepPoint.of(44, N=8, L=128),
            SweepPoint.of(45, N=1, L=256),
            SweepPoint.of(46, N=2, L=512),
        ),
        example=SweepPoint.of(0, N=2, L=24),
        constants={
            scale: {"vocab": config.vocab, "width": config.width}
            for scale, config in CONFIGS.items()
        },
        input_maker=make_tokens,
        network_factory=make_network,
    ),
)
