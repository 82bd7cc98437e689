"""Valid, varied inputs for zoo models, made with numpy alone.

Each generator takes a `numpy.random.Generator`, so a seed fixes its output. Images are smooth
random scenes with a per-image brightness and contrast, not white noise: pooled features, and so
the gates and early exits computed from them, then differ from image to image as they would on
real photos. Token ids stay inside the vocabulary, with the special tokens where the tokenizer
puts them; masks and lengths mark real padding.
"""

from __future__ import annotations

import numpy as np

IMAGE_WAVES = 6


def natural_images(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """`count` normalized RGB images, float32 `[count, 3, height, width]`, values mostly in [-3, 3].

    Each channel is a sum of a few random plane waves (low spatial frequencies), scaled by a
    per-image contrast and shifted by a per-image, per-channel brightness, plus mild pixel noise.
    """
    rows = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :]
    images = np.empty((count, 3, height, width), dtype=np.float32)
    for index in range(count):
        contrast = rng.uniform(0.3, 1.5)
        brightness = rng.uniform(-1.2, 1.2) + rng.normal(0.0, 0.3, size=3)
        for channel in range(3):
            scene = _plane_waves(rng, rows, cols) * contrast + brightness[channel]
            images[index, channel] = scene + rng.normal(0.0, 0.1, size=scene.shape)
    return images


def _plane_waves(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    field = np.zeros((rows.shape[0], cols.shape[1]))
    for _ in range(IMAGE_WAVES):
        freq_rows, freq_cols = rng.uniform(-4.0, 4.0, size=2)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        field += np.cos(2.0 * np.pi * (freq_rows * rows + freq_cols * cols) + phase)
    return field / np.sqrt(IMAGE_WAVES / 2.0)


def padded_lengths(rng: np.random.Generator, count: int, longest: int) -> np.ndarray:
    """`count` sequence lengths in `[max(1, longest // 2), longest]`, the first one `longest`.

    A batch is padded to its longest member, so exactly that length always occurs.
    """
    lengths = rng.integers(max(1, longest // 2), longest + 1, size=count)
    lengths[0] = longest
    return lengths.astype(np.int64)


def attention_mask(lengths: np.ndarray, width: int) -> np.ndarray:
    """int64 `[len(lengths), width]`: 1 for the first `lengths[i]` positions of row i, else 0."""
    return (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)


def roberta_token_ids(
    rng: np.random.Generator, lengths: np.ndarray, width: int, vocab: int
) -> np.ndarray:
    """RoBERTa-style ids: `<s>`=0, words in [3, vocab), `</s>`=2 at the end, then padding `<pad>`=1."""
    ids = np.ones((len(lengths), width), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(3, vocab, size=length)
        ids[row, 0] = 0
        ids[row, length - 1] = 2 if length > 1 else 0
    return ids


def clip_token_ids(rng: np.random.Generator, count: int, width: int, vocab: int) -> np.ndarray:
    """CLIP-style ids: start token `vocab-2`, words below it, the end token `vocab-1` after the text
    and as padding up to `width` (the end token has the largest id, which pooling relies on)."""
    start, end = vocab - 2, vocab - 1
    ids = np.full((count, width), end, dtype=np.int64)
    for row in range(count):
        text_length = int(rng.integers(0, width - 1)) if width > 1 else 0
        ids[row, 0] = start
        ids[row, 1 : 1 + text_length] = rng.integers(0, start, size=text_length)
    return ids


def log_mel_features(
    rng: np.random.Generator, lengths: np.ndarray, frames: int, bins: int
) -> np.ndarray:
    """float32 `[len(lengths), frames, bins]` log-mel-like features, zero past each length."""
    features = np.zeros((len(lengths), frames, bins), dtype=np.float32)
    spectrum = np.linspace(1.0, -1.0, bins)
    for row, length in enumerate(lengths):
        envelope = np.cumsum(rng.normal(0.0, 0.2, size=(length, 1)), axis=0)
        noise = rng.normal(0.0, 0.5, size=(length, bins))
        features[row, :length] = spectrum + np.tanh(envelope) + noise
    return features


def prompt_points(
    rng: np.random.Generator, count: int, points: int, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts in pixels of an `image_size` square: float32 `[count, points, 2]`, and labels
    int64 `[count, points]` with 1 (foreground), 0 (background) and some -1 (padding point)."""
    coords = rng.uniform(0.0, image_size, size=(count, points, 2)).astype(np.float32)
    labels = rng.choice(np.array([1, 1, 0, -1]), size=(count, points)).astype(np.int64)
    labels[:, 0] = 1
    return coords, labels


def prompt_boxes(rng: np.random.Generator, count: int, boxes: int, image_size: int) -> np.ndarray:
    """Box prompts `x1, y1, x2, y2` in pixels, float32 `[count, boxes, 4]`, with x1 < x2, y1 < y2."""
    corners = rng.uniform(0.0, image_size, size=(count, boxes, 2, 2))
    low, high = corners.min(axis=2), corners.max(axis=2) + 1.0
    return np.concatenate([low, high], axis=-1).astype(np.float32)
