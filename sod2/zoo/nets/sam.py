"""Segment Anything (Kirillov et al., ICCV 2023): image encoder, prompt encoder, mask decoder.

Image encoder: a ViT on 16x16 patches with an absolute position embedding (trained for a 64x64
grid, resized to the actual grid), blocks of windowed attention (14x14 windows, the grid padded to
a multiple of the window) with a few global-attention blocks, decomposed relative position biases
(tables resized to the actual size when it differs), and a conv neck with LayerNorm2d.
Prompt encoder: random Fourier features of point and box-corner coordinates plus learned
embeddings by label (foreground, background, padding point, top-left and bottom-right corner);
a dense embedding from a low-resolution mask (two stride-2 convs) blended by `has_mask_input`
with the learned "no mask" embedding, as in SAM's ONNX export.
Mask decoder: a two-way transformer between the output tokens (IoU token, 4 mask tokens, the
prompt tokens) and the image embedding, 4x transposed-conv upscaling, per-mask hypernetwork MLPs,
and an IoU head. The number of prompt points and boxes and the image size stay dynamic.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from sod2.zoo.nets.attention import MultiHeadAttention
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.segment_anything import IMAGE_SIZE, ImageEncoderConfig, PromptConfig

PATCH = 16


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized `x`."""
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(variance + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def resize_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """A relative-position table `[2s-1, d]` for size `size` (linearly resized if it differs)."""
    distances = 2 * size - 1
    if isinstance(distances, int) and distances == table.shape[0]:
        return table
    resized = F.interpolate(table.transpose(0, 1).unsqueeze(0), size=distances, mode="linear")
    return resized[0].transpose(0, 1)


def relative_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """`[size, size, d]`: the embedding of the distance from query i to key j."""
    positions = torch.arange(size)
    distance = positions[:, None] - positions[None, :] + (size - 1)
    return resize_table(table, size)[distance]


class RelativePositionAttention(nn.Module):
    """Multi-head attention over a `[B, h, w, dim]` grid with decomposed relative positions."""

    def __init__(self, dim: int, heads: int, table_size: int) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table_h = nn.Parameter(torch.randn(2 * table_size - 1, head_dim) * 0.02)
        self.table_w = nn.Parameter(torch.randn(2 * table_size - 1, head_dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention of every grid cell to every other."""
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.heads, height * width, -1).unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        scores = self.add_relative(scores, q, height, width)
        out = (scores.softmax(dim=-1) @ v).view(batch, self.heads, height, width, -1)
        return self.proj(out.permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1))

    def add_relative(
        self, scores: torch.Tensor, q: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """`scores + (q . R_h[i_h - j_h]) + (q . R_w[i_w - j_w])`, decomposed per axis."""
        grid_q = q.reshape(q.shape[0], height, width, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, relative_table(height, self.table_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, relative_table(width, self.table_w))
        scores = scores.view(-1, height, width, height, width)
        scores = scores + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
        return scores.view(-1, height * width, height * width)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """`[1, H, W, C]` -> `[windows, window, window, C]`, zero-padding H and W up to multiples."""
    _, height, width, channels = x.shape
    x = F.pad(x, (0, 0, 0, (-width) % window, 0, (-height) % window))
    rows, cols = x.shape[1] // window, x.shape[2] // window
    x = x.view(1, rows, window, cols, window, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, channels)


def window_unpartition(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`, dropping the padding: `[1, height, width, C]`."""
    rows, cols = (height + (-height) % window) // window, (width + (-width) % window) // window
    x = windows.view(1, rows, cols, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(1, rows * window, cols * window, -1)[:, :height, :width, :]


class VitBlock(nn.Module):
    """Pre-norm transformer block, windowed (`window` > 0) or global attention."""

    def __init__(self, dim: int, heads: int, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = RelativePositionAttention(dim, heads, window or grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One block over the `[1, h, w, dim]` grid."""
        height, width = x.shape[1], x.shape[2]
        attended = self.norm1(x)
        if self.window:
            attended = window_partition(attended, self.window)
            attended = window_unpartition(self.attention(attended), self.window, height, width)
        else:
            attended = self.attention(attended)
        x = x + attended
        return x + self.mlp(self.norm2(x))


class ImageEncoder(nn.Module):
    """Image `[1, 3, H, W]` -> embedding `[1, C, floor(H/16), floor(W/16)]`."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        dim = config.dim
        self.patch_embed = nn.Conv2d(3, dim, PATCH, PATCH)
        self.pos_embed = nn.Parameter(torch.randn(1, dim, config.grid, config.grid) * 0.02)
        self.blocks = nn.ModuleList(
            VitBlock(
                dim,
                config.heads,
                0 if index in config.global_blocks else config.window,
                config.grid,
            )
            for index in range(config.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(dim, config.out_channels, 1, bias=False),
            LayerNorm2d(config.out_channels),
            nn.Conv2d(config.out_channels, config.out_channels, 3, padding=1, bias=False),
            LayerNorm2d(config.out_channels),
        )
        randomize_norm_layers(self)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The image embedding."""
        x = self.patch_embed(image)
        x = x + F.interpolate(
            self.pos_embed, size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


class RandomFourierFeatures(nn.Module):
    """`[..., 2]` coordinates in [0, 1] -> `[..., 2*features]` via a fixed Gaussian projection."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("gaussian", torch.randn(2, features))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """`cat(sin, cos)` of `2 pi (2 coords - 1) G`."""
        projected = 2.0 * math.pi * ((2.0 * coords - 1.0) @ self.gaussian)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def grid(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """Encodings of the cell centres of an `height` x `width` grid: `[1, C, height, width]`."""
        ys = (torch.arange(height, dtype=like.dtype) + 0.5) / height
        xs = (torch.arange(width, dtype=like.dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return self(torch.stack([grid_x, grid_y], dim=-1)).permute(2, 0, 1).unsqueeze(0)


class PromptEncoder(nn.Module):
    """Points, boxes and a mask prompt -> sparse `[N, P+2B, C]` and dense `[N, C, h, w]` embeddings."""

    def __init__(self, config: PromptConfig) -> None:
        super().__init__()
        channels = config.channels
        self.pe = RandomFourierFeatures(channels // 2)
        self.label_embeddings = nn.Parameter(torch.randn(4, channels) * 0.5)
        self.not_a_point = nn.Parameter(torch.randn(channels) * 0.5)
        self.no_mask = nn.Parameter(torch.randn(channels) * 0.5)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, channels // 16, 2, 2),
            LayerNorm2d(channels // 16),
            nn.GELU(),
            nn.Conv2d(channels // 16, channels // 4, 2, 2),
            LayerNorm2d(channels // 4),
            nn.GELU(),
            nn.Conv2d(channels // 4, channels, 1),
        )
        randomize_norm_layers(self)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Label -1 (padding): the not-a-point embedding only; 0 / 1: position + that label's."""
        encoded = self.pe((coords + 0.5) / IMAGE_SIZE)
        padding = (labels == -1).unsqueeze(-1)
        by_label = self.label_embeddings[labels.clamp(min=0)]
        return torch.where(padding, self.not_a_point, encoded + by_label)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Each box as its two corners, each corner position + its corner embedding."""
        corners = self.pe((boxes.unflatten(-1, (2, 2)) + 0.5) / IMAGE_SIZE)
        return (corners + self.label_embeddings[2:]).flatten(1, 2)

    def forward(
        self,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        boxes: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse and dense prompt embeddings."""
        sparse = torch.cat(
            [self.embed_points(point_coords, point_labels), self.embed_boxes(boxes)], dim=1
        )
        has_mask = has_mask_input[:, None, None, None]
        dense = (
            has_mask * self.mask_downscaling(mask_input)
            + (1.0 - has_mask) * self.no_mask[None, :, None, None]
        )
        return sparse, dense


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """`layers` linear layers with ReLU between them."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for index, (a, b) in enumerate(itertools.pairwise(dims)):
        modules.append(nn.Linear(a, b))
        if index < layers - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


class TwoWayBlock(nn.Module):
    """Token self-attention, token-to-image cross-attention, token MLP, image-to-token attention."""

    def __init__(self, channels: int, heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attention = MultiHeadAttention(channels, heads)
        self.token_to_image = MultiHeadAttention(channels, heads, inner_dim=channels // 2)
        self.mlp = mlp(channels, mlp_dim, channels, 2)
        self.image_to_token = MultiHeadAttention(channels, heads, inner_dim=channels // 2)
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(4))

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated tokens `[N, T, C]` and image tokens `[N, hw, C]`."""
        if self.skip_first_pe:
            queries = self.self_attention(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attention(q, q, queries)
        queries = self.norms[0](queries)
        queries = self.norms[1](
            queries + self.token_to_image(queries + query_pe, keys + key_pe, keys)
        )
        queries = self.norms[2](queries + self.mlp(queries))
        keys = self.norms[3](keys + self.image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class MaskDecoder(nn.Module):
    """Image embedding and prompt embeddings -> 4 mask logits at 4x the grid, 4 IoU scores."""

    def __init__(self, config: PromptConfig) -> None:
        super().__init__()
        channels = config.channels
        self.pe = RandomFourierFeatures(channels // 2)
        self.output_tokens = nn.Parameter(torch.randn(5, channels) * 0.5)
        self.blocks = nn.ModuleList(
            TwoWayBlock(channels, config.heads, config.mlp_dim, index == 0)
            for index in range(config.depth)
        )
        self.final_attention = MultiHeadAttention(channels, config.heads, inner_dim=channels // 2)
        self.final_norm = nn.LayerNorm(channels)
        self.upscaling = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 4, 2, 2),
            LayerNorm2d(channels // 4),
            nn.GELU(),
            nn.ConvTranspose2d(channels // 4, channels // 8, 2, 2),
            nn.GELU(),
        )
        self.hypernetworks = nn.ModuleList(
            mlp(channels, channels, channels // 8, 3) for _ in range(4)
        )
        self.iou_head = mlp(channels, config.iou_hidden, 4, 3)
        randomize_norm_layers(self)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks `[N, 4, 4h, 4w]` and IoU predictions `[N, 4]`."""
        prompts = sparse_prompt_embeddings.shape[0]
        _, channels, height, width = image_embeddings.shape
        tokens = torch.cat(
            [self.output_tokens.expand(prompts, -1, -1), sparse_prompt_embeddings], dim=1
        )
        src = image_embeddings + dense_prompt_embeddings
        keys = src.flatten(2).transpose(1, 2)
        key_pe = self.pe.grid(height, width, src).flatten(2).transpose(1, 2)
        queries = tokens
        for block in self.blocks:
            queries, keys = block(queries, keys, tokens, key_pe)
        attended = self.final_attention(queries + tokens, keys + key_pe, keys)
        queries = self.final_norm(queries + attended)
        upscaled = self.upscaling(keys.transpose(1, 2).reshape(prompts, channels, height, width))
        hyper = torch.stack(
            [net(queries[:, 1 + index]) for index, net in enumerate(self.hypernetworks)], dim=1
        )
        masks = (hyper @ upscaled.flatten(2)).reshape(
            prompts, 4, upscaled.shape[2], upscaled.shape[3]
        )
        return masks, self.iou_head(queries[:, 0])
