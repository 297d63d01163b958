"""The layers the conv models are built of, beside torch's own: the activations by name, the
normalisation after a convolution, the residual block, and the feature-map sizes of stride-2 stages."""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU}


MAX_RES_BLOCKS = 16
NORMS = ("none", "group")
GROUPS = 8  # GroupNorm's groups (fewer where the channels are not a multiple of it)


def normalisation(norm: str, channels: int) -> list[nn.Module]:
    """The layer that follows a convolution with ``channels`` outputs: none, or GroupNorm."""
    return [nn.GroupNorm(math.gcd(GROUPS, channels), channels)] if norm == "group" else []


class ResidualBlock(nn.Module):
    """``act(x + conv(act(conv(x))))`` with 3x3 convolutions that keep the channels and the size,
    each convolution followed by ``norm``'s layer.

    The activation comes after the sum, never on ``x`` itself, so activations that work in place
    (:mod:`aelab.models.cpu_inference`) leave the block's input intact for the sum.
    """

    def __init__(self, channels: int, act: type[nn.Module], norm: str = "none") -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), *normalisation(norm, channels), act(),
                                  nn.Conv2d(channels, channels, 3, padding=1), *normalisation(norm, channels))
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def conv_sizes(input_shape: tuple[int, int], stages: int) -> list[tuple[int, int]]:
    """The feature-map sizes of a conv encoder: the input, then each stride-2 stage's ceil(size / 2)."""
    sizes = [tuple(input_shape)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes
