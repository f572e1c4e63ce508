"""The multilayer perceptron (`--network mlp`): flat pixels in, flat pixels out."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import ACTIVATIONS, ConditionalLinear, Dense, Network


class MLP(Network):
    """in -> hidden... -> out (a linear head), the first layer also seeing the label if it has classes."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], out_features: int, activation: str,
                 num_classes: int):
        super().__init__()
        widths = (in_features, *hidden)
        self.first = ConditionalLinear(widths[0], widths[1] if hidden else out_features, num_classes)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[1:], widths[2:]):
            layers += [ACTIVATIONS[activation](), Dense(width_in, width_out)]
        if hidden:
            layers += [ACTIVATIONS[activation](), Dense(widths[-1], out_features)]
        self.rest = nn.Sequential(*layers)
        self.description = f"MLP {'-'.join(map(str, hidden)) or 'linear'} {activation}"

    def compute(self, inputs: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.rest(self.first(inputs, y))


class MLPEncoder(MLP):
    """Images [*batch, C, H, W] (and y) -> [*batch, out_features], through an MLP on the flat pixels."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, num_classes: int,
                 hidden: tuple[int, ...] = (500, 500), activation: str = "relu"):
        super().__init__(math.prod(image_shape), tuple(hidden), out_features, activation, num_classes)

    def compute(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().compute(x.flatten(-3), y)


class MLPDecoder(MLP):
    """Codes [*batch, d] (and y) -> [*batch, C, H, W] per-pixel parameters; the hidden widths mirror the encoder's."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int,
                 hidden: tuple[int, ...] = (500, 500), activation: str = "relu"):
        super().__init__(latent_dim, tuple(reversed(hidden)), math.prod(image_shape), activation, num_classes)
        self.image_shape = tuple(image_shape)

    def compute(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().compute(z, y).unflatten(-1, self.image_shape)
