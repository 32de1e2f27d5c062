"""Random weights for every parameter, for parity tests and speed benchmarks.

Default initialisation leaves many tensors at zero or one (relative positions, norms, biases),
which would let a wrong implementation pass a parity test; this fills them all.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every floating-point parameter and buffer of ``model`` from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point() or name.endswith(("pixel_mean", "pixel_std")):
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("pos_embed"):
            values = 0.02 * noise
        elif tensor.ndim >= 2:
            fan_in = math.prod(tensor.shape[1:])
            values = noise / math.sqrt(fan_in)
        elif "norm" in name and name.endswith("weight"):
            values = 1.0 + 0.1 * noise
        else:
            values = 0.1 * noise
        tensor.copy_(values.to(tensor.dtype))
    return model
