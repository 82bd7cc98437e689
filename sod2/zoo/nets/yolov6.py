"""YOLOv6 (Li et al., 2022): EfficientRep backbone, Rep-PAN neck, efficient decoupled head,
anchor-free box decoding, and score-threshold plus top-k post-processing.

Blocks are in their deployed form: a RepVGG block, trained as parallel 3x3, 1x1 and identity
branches, is re-parameterized into one 3x3 conv with bias and ReLU before export, as YOLOv6 does.
The image is zero-padded at the bottom and right to a multiple of the largest stride (32), as
YOLOv6's letterbox does, so any resolution runs and the neck's concatenations line up.
Post-processing keeps the `max_detections` best anchors and then those above the score
threshold, which selects exactly the above-threshold anchors among the best `max_detections`
(threshold first, then top-k, as YOLOv6's NMS does before suppression; suppression itself is left
out). The number of detections depends on the data (ONNX TopK with a computed k, then NonZero).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sod2.zoo.calibration import widest_gap_threshold
from sod2.zoo.nets.init import randomize_norm_layers
from sod2.zoo.yolov6 import YoloConfig

STRIDES = (8, 16, 32)


def rep_conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """A deployed RepVGG block: 3x3 conv with bias, then ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.ReLU())


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1
) -> nn.Sequential:
    """Conv, BatchNorm, ReLU (YOLOv6's `ConvBNReLU`, used in the neck and head)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU())


def rep_block(in_channels: int, out_channels: int, repeats: int) -> nn.Sequential:
    """`repeats` RepVGG blocks, the first changing the width."""
    layers = [rep_conv(in_channels, out_channels)]
    layers += [rep_conv(out_channels, out_channels) for _ in range(repeats - 1)]
    return nn.Sequential(*layers)


class SimSPPF(nn.Module):
    """Simplified SPPF: 1x1 reduce, three chained 5x5 max pools, concat, 1x1 expand."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(channels, channels // 2, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.expand = conv_bn_relu(channels * 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features at three receptive fields, fused."""
        x = self.reduce(x)
        first = self.pool(x)
        second = self.pool(first)
        return self.expand(torch.cat([x, first, second, self.pool(second)], dim=1))


class EfficientRep(nn.Module):
    """Stem and four ERBlocks (stride-2 RepVGG block, RepBlock); returns C3, C4, C5."""

    def __init__(self, channels: tuple[int, ...], repeats: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = rep_conv(3, channels[0], 2)
        stages = []
        for index in range(1, 5):
            layers = [rep_conv(channels[index - 1], channels[index], 2)]
            layers.append(rep_block(channels[index], channels[index], repeats[index]))
            if index == 4:
                layers.append(SimSPPF(channels[4]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at strides 8, 16 and 32."""
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[1:]


class RepPAN(nn.Module):
    """Top-down (transposed-conv upsampling) then bottom-up (stride-2 conv) feature pyramid."""

    def __init__(self, channels: tuple[int, ...], neck: tuple[int, int], repeats: int) -> None:
        super().__init__()
        c3, c4, c5 = channels[2], channels[3], channels[4]
        wide, narrow = neck
        self.reduce5 = conv_bn_relu(c5, wide, 1)
        self.up5 = nn.ConvTranspose2d(wide, wide, 2, 2)
        self.top4 = rep_block(wide + c4, wide, repeats)
        self.reduce4 = conv_bn_relu(wide, narrow, 1)
        self.up4 = nn.ConvTranspose2d(narrow, narrow, 2, 2)
        self.top3 = rep_block(narrow + c3, narrow, repeats)
        self.down3 = conv_bn_relu(narrow, narrow, 3, 2)
        self.bottom4 = rep_block(narrow * 2, wide, repeats)
        self.down4 = conv_bn_relu(wide, wide, 3, 2)
        self.bottom5 = rep_block(wide * 2, wide * 2, repeats)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Fused features P3, P4, P5 (strides 8, 16, 32)."""
        c3, c4, c5 = features
        p5 = self.reduce5(c5)
        top4 = self.top4(torch.cat([self.up5(p5), c4], dim=1))
        p4 = self.reduce4(top4)
        out3 = self.top3(torch.cat([self.up4(p4), c3], dim=1))
        out4 = self.bottom4(torch.cat([self.down3(out3), p4], dim=1))
        out5 = self.bottom5(torch.cat([self.down4(out4), p5], dim=1))
        return [out3, out4, out5]


class DecoupledHead(nn.Module):
    """Per level: a 1x1 stem, then separate 3x3 class and box branches (efficient decoupled head)."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.stem = conv_bn_relu(channels, channels, 1)
        self.cls_branch = nn.Sequential(
            conv_bn_relu(channels, channels, 3), nn.Conv2d(channels, classes, 1)
        )
        self.box_branch = nn.Sequential(
            conv_bn_relu(channels, channels, 3), nn.Conv2d(channels, 4, 1)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits `[1, classes, h, w]` and box distances (left, top, right, bottom) `[1, 4, h, w]`."""
        x = self.stem(x)
        return self.cls_branch(x), torch.relu(self.box_branch(x))


def anchor_points(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Cell centres `[height*width, 2]` (x, y) of a feature map, in cells."""
    ys = torch.arange(height, dtype=like.dtype) + 0.5
    xs = torch.arange(width, dtype=like.dtype) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


def decode_level(
    scores: torch.Tensor, distances: torch.Tensor, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes `[h*w, 4]` (x1, y1, x2, y2 in pixels) and class probabilities `[h*w, classes]`."""
    height, width = scores.shape[-2:]
    centres = anchor_points(height, width, scores)
    ltrb = distances[0].flatten(1).transpose(0, 1)
    boxes = torch.cat([centres - ltrb[:, :2], centres + ltrb[:, 2:]], dim=-1) * stride
    return boxes, torch.sigmoid(scores[0].flatten(1).transpose(0, 1))


class YoloV6(nn.Module):
    """Detector returning the boxes, scores and classes of the kept detections."""

    def __init__(self, config: YoloConfig) -> None:
        super().__init__()
        self.backbone = EfficientRep(config.channels, config.repeats)
        self.neck = RepPAN(config.channels, config.neck, config.neck_repeats)
        widths = (config.neck[1], config.neck[0], config.neck[0] * 2)
        self.heads = nn.ModuleList(DecoupledHead(width, config.classes) for width in widths)
        self.max_detections = config.max_detections
        self.register_buffer("score_threshold", torch.tensor(0.25))
        randomize_norm_layers(self)

    def candidates(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes `[A, 4]` and class probabilities `[A, classes]` of every anchor of every level."""
        height, width = image.shape[-2:]
        padded = F.pad(image, (0, (-width) % STRIDES[-1], 0, (-height) % STRIDES[-1]))
        levels = self.neck(self.backbone(padded))
        decoded = [
            decode_level(*head(x), stride)
            for head, x, stride in zip(self.heads, levels, STRIDES, strict=True)
        ]
        return torch.cat([boxes for boxes, _ in decoded]), torch.cat(
            [probs for _, probs in decoded]
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes `[D, 4]`, scores `[D]` and class ids `[D]` of the detections kept."""
        boxes, probabilities = self.candidates(image)
        scores, classes = probabilities.max(dim=-1)
        best_scores, best = torch.topk(scores, min(self.max_detections, scores.shape[0]))
        keep = best_scores > self.score_threshold
        chosen = best[keep]
        return boxes[chosen], best_scores[keep], classes[chosen]

    def calibrate(self, images: list[torch.Tensor]) -> None:
        """Put the score threshold in the widest gap between the sweep's top scores at which the
        number of detections varies across the sweep, with a median between 5% and 50% of
        `max_detections`; no score then lies close to the threshold."""
        tops = [
            self.candidates(image)[1].max(dim=-1).values.topk(self.max_detections).values
            for image in images
        ]

        def varied(threshold: float) -> bool:
            counts = sorted(int((top > threshold).sum()) for top in tops)
            median = counts[len(counts) // 2]
            return (
                counts[0] < counts[-1]
                and self.max_detections // 20 <= median <= self.max_detections // 2
            )

        values = torch.cat(tops).tolist()
        self.score_threshold.fill_(widest_gap_threshold(values, varied, "score threshold"))


def build(config: YoloConfig, images: list[torch.Tensor]) -> YoloV6:
    """A seeded YOLOv6 calibrated on `images`, in eval mode."""
    network = YoloV6(config).eval()
    network.calibrate(images)
    return network
