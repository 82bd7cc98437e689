"""Seeded random weights that keep activations in a sane range through deep random networks.

No trained weights can be used, so normalization layers get random statistics (a real network's
are never the identity), and the last normalization of each residual branch gets a small scale so
that the sum over tens of residual blocks stays bounded, as it does in a trained network.
"""

from __future__ import annotations

import torch
from torch import nn

RESIDUAL_SCALE = 0.2


def randomize_norm_layers(module: nn.Module) -> None:
    """Give every BatchNorm random running statistics and affine terms, and every LayerNorm or
    GroupNorm a random affine transform near the identity (drawn from torch's global generator)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.normal_(0.0, 0.1)
            layer.running_var.uniform_(0.5, 1.5)
            layer.weight.data.uniform_(0.5, 1.0)
            layer.bias.data.normal_(0.0, 0.1)
        elif isinstance(layer, nn.LayerNorm | nn.GroupNorm) and layer.weight is not None:
            layer.weight.data.uniform_(0.8, 1.2)
            layer.bias.data.normal_(0.0, 0.05)


def damp_residual_branch(norm: nn.Module) -> None:
    """Scale down the affine weight of the last norm of a residual branch."""
    with torch.no_grad():
        norm.weight.mul_(RESIDUAL_SCALE)
