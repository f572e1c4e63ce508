"""The residual pair (`--network resnet`), in the spirit of the ResNet VAE of Kingma et al. (2016).

Both networks work at two resolutions (14 x 14 and 7 x 7 for a 28 x 28 image) with `channels` maps
throughout and `depth` residual blocks at each; a block adds two 3x3 convolutions to its input.
The encoder enters with a stride-2 convolution and halves once more between its stages; the
decoder mirrors it with transposed convolutions and ends with a 3x3 convolution to the pixels.
Unlike the paper's networks there is no weight normalisation and no data-dependent
initialisation: each block's second convolution starts at zero instead, so every block starts
as the identity and a deep stack trains from the first step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv import CodeDecoder, ImageEncoder, resolutions, upsample
from .layers import ACTIVATIONS, ClassBias, ConditionalLinear, Dense


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))) on [N, channels, H, W]; the second convolution starts at zero."""

    def __init__(self, channels: int, activation: str):
        super().__init__()
        second = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(second.weight)
        nn.init.zeros_(second.bias)
        self.branch = nn.Sequential(ACTIVATIONS[activation](), nn.Conv2d(channels, channels, 3, padding=1),
                                    ACTIVATIONS[activation](), second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _blocks(channels: int, depth: int, activation: str) -> list[nn.Module]:
    return [ResidualBlock(channels, activation) for _ in range(depth)]


class ResNetEncoder(ImageEncoder):
    """The residual encoder. The label adds a learned bias per class to each of the first
    convolution's maps (`ClassBias`)."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, num_classes: int,
                 channels: int = 32, depth: int = 2, activation: str = "relu"):
        super().__init__()
        planes, height, width = image_shape
        sizes = resolutions(height, width)
        self.stem = nn.Conv2d(planes, channels, 3, stride=2, padding=1)
        self.label = ClassBias(num_classes, channels)
        self.body = nn.Sequential(*_blocks(channels, depth, activation), ACTIVATIONS[activation](),
                                  nn.Conv2d(channels, channels, 3, stride=2, padding=1),
                                  *_blocks(channels, depth, activation), ACTIVATIONS[activation](), nn.Flatten())
        self.head = Dense(channels * math.prod(sizes[-1]), out_features)
        self.description = f"ResNet {channels} channels, {depth} blocks per resolution, {activation}"


class ResNetDecoder(CodeDecoder):
    """The residual decoder. The label enters the first (dense) layer as a learned row per class
    (`ConditionalLinear`)."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int,
                 channels: int = 32, depth: int = 2, activation: str = "relu"):
        super().__init__()
        planes, height, width = image_shape
        sizes = resolutions(height, width)
        self.image_shape = tuple(image_shape)
        self.start = (channels, *sizes[-1])
        self.first = ConditionalLinear(latent_dim, math.prod(self.start), num_classes)
        self.body = nn.Sequential(*_blocks(channels, depth, activation), ACTIVATIONS[activation](),
                                  upsample(channels, channels, sizes[2], sizes[1]),
                                  *_blocks(channels, depth, activation), ACTIVATIONS[activation](),
                                  upsample(channels, channels, sizes[1], sizes[0]), ACTIVATIONS[activation](),
                                  nn.Conv2d(channels, planes, 3, padding=1))
        self.description = f"ResNet {channels} channels, {depth} blocks per resolution, {activation}"
