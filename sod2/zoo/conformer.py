"""Zoo entry: Conformer, a speech encoder (convolutional subsampling plus Conformer blocks).

Dynamism: batch `N` and audio length `T` in 10 ms frames of 80 log-mel bins; the output length
is `floor((floor((T-1)/2) - 1)/2)` and each utterance's own length drives a padding mask.
Small: width 32, 2 blocks, kernel 15. Paper: Conformer-M (width 256, 16 blocks, 4 heads, kernel 31).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sod2.zoo.inputs import log_mel_features, padded_lengths
from sod2.zoo.spec import Arrays, Binding, SweepPoint, SymbolRange, TensorSpec, ZooModel

if TYPE_CHECKING:
    from torch import nn

MEL_BINS = 80
SUBSAMPLED = "floor((floor((T - 1)/2) - 1)/2)"


@dataclass(frozen=True, slots=True)
class ConformerConfig:
    """Mel bins, model width, blocks, heads, depthwise kernel, feed-forward expansion."""

    bins: int
    width: int
    layers: int
    heads: int
    kernel: int
    expansion: int


CONFIGS = {
    "small": ConformerConfig(MEL_BINS, width=32, layers=2, heads=2, kernel=15, expansion=2),
    "paper": ConformerConfig(MEL_BINS, width=256, layers=16, heads=4, kernel=31, expansion=4),
}


def make_network(scale: str, calibration: Sequence[Arrays]) -> nn.Module:
    """The seeded torch Conformer at `scale` (imports torch)."""
    from sod2.zoo.nets.conformer import Conformer

    return Conformer(CONFIGS[scale])


def make_audio(binding: Binding, rng: np.random.Generator, constants: Mapping[str, int]) -> Arrays:
    """A padded batch of log-mel features and the length of each utterance."""
    lengths = padded_lengths(rng, binding["N"], binding["T"])
    return {
        "features": log_mel_features(rng, lengths, binding["T"], MEL_BINS),
        "feature_lengths": lengths,
    }


ENTRIES = (
    ZooModel(
        name="conformer",
        family="Conformer",
        summary="conv2d subsampling (4x) then Conformer blocks: macaron FFN, relative-position MHSA, conv module",
        source="Gulati et al.: Conformer: Convolution-augmented Transformer for Speech Recognition (Interspeech 2020)",
        dynamism="S",
        inputs=(
            TensorSpec(
                "features", "float32", ("N", "T", MEL_BINS), "log-mel frames, zero past each length"
            ),
            TensorSpec(
                "feature_lengths", "int64", ("N",), "frames per utterance (the longest is T)"
            ),
        ),
        outputs=(
            TensorSpec("encoded", "float32", ("N", SUBSAMPLED, "width"), "encoded frames"),
            TensorSpec("encoded_lengths", "int64", ("N",), "valid encoded frames per utterance"),
        ),
        symbols=(
            SymbolRange("N", 1, 8, "batch size"),
            SymbolRange("T", 16, 3000, "frames (10 ms each)"),
        ),
        sweep=(
            SweepPoint.of(81, N=1, T=64),
            SweepPoint.of(82, N=4, T=200),
            SweepPoint.of(83, N=2, T=400),
            SweepPoint.of(84, N=1, T=800),
            SweepPoint.of(85, N=2, T=1200),
            SweepPoint.of(86, N=1, T=1600),
        ),
        example=SweepPoint.of(0, N=2, T=150),
        constants={scale: {"width": config.width} for scale, config in CONFIGS.items()},
        input_maker=make_audio,
        network_factory=make_network,
    ),
)
