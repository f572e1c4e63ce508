"""The convolutional pair (`--network conv`): strided convolutions down, transposed convolutions up.

With the defaults a 28 x 28 image goes 28 -> 14 -> 7 and back: the encoder is a 3x3 convolution to
`channels` maps, then two stages that halve the resolution with a stride-2 convolution (to
`channels`, then 2 x `channels` maps), each followed by depth - 1 more 3x3 convolutions, and a
dense head; the decoder mirrors it with transposed convolutions. Any H x W works: odd sizes round up
on the way down and the transposed convolutions' output padding restores them exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import ACTIVATIONS, ClassBias, ConditionalLinear, Dense, Network, flat_labels


def halve(size: int) -> int:
    """The output size of a 3x3, stride-2, padding-1 convolution."""
    return (size + 1) // 2


def resolutions(height: int, width: int, stages: int = 2) -> list[tuple[int, int]]:
    """[(H, W), (H/2, W/2), ...] rounded up, one entry per stage and the input's."""
    sizes = [(height, width)]
    for _ in range(stages):
        sizes.append((halve(sizes[-1][0]), halve(sizes[-1][1])))
    return sizes


def upsample(channels_in: int, channels_out: int, small: tuple[int, int], big: tuple[int, int]) -> nn.ConvTranspose2d:
    """A 3x3, stride-2 transposed convolution from `small` to exactly `big` (= halve^-1 of small)."""
    padding = tuple(b - (2 * s - 1) for s, b in zip(small, big))  # 0 or 1: 2s - 1 + padding = b
    return nn.ConvTranspose2d(channels_in, channels_out, 3, stride=2, padding=1, output_padding=padding)


def fold(inputs: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    """inputs [*batch, *event] -> ([N, *event], batch) with N = prod(batch): a view where it can be."""
    batch = inputs.shape[: inputs.dim() - event_dims]
    return inputs.reshape(math.prod(batch), *inputs.shape[len(batch):]), batch


MAPS_LAST = torch.channels_last  # how the convolutional networks lay out their feature maps (see ImageEncoder)


class ImageEncoder(Network):
    """Images [*batch, C, H, W] (and y) -> [*batch, out_features] through `stem` (a convolution),
    `label` (a `ClassBias` on its maps), `body` (to flat features) and `head` (dense); the batch
    dimensions are folded into one on the way. Labels y may have more leading dimensions than x's
    batch (y [classes, batch] with x [batch, C, H, W]: each image under every class); the output
    then has their broadcast batch shape. Subclasses build the four parts.

    The feature maps are laid out channels-last (`memory_format`, N x H x W x C in memory; the
    values and shapes are the same): oneDNN's CPU convolutions are 1.2-3 times as fast on them,
    most of all for the one-channel image in and the pixels out (benchmarks/train_throughput.py).
    """

    memory_format = MAPS_LAST

    def compute(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        images, batch = fold(x, 3)
        features = self.stem(images.contiguous(memory_format=self.memory_format))
        if y is not None and y.dim() > len(batch):  # more labels than images (every class for each image):
            # the stem ran once per image; its maps are shared by the labels, copied only from here on
            labelled = torch.broadcast_shapes(batch, y.shape)
            features = features.view(*batch, *features.shape[1:]).expand(*labelled, *features.shape[1:])
            features, batch = fold(features, 3)
        features = self.label(features, flat_labels(y, batch))
        return self.head(self.body(features)).view(*batch, -1)


class CodeDecoder(Network):
    """Codes [*batch, d] (and y) -> [*batch, C, H, W] through `first` (a `ConditionalLinear` to the
    `start` feature maps) and `body` (to the pixels); the batch dimensions are folded into one on
    the way. Subclasses build the parts. Its maps are channels-last, as the encoder's."""

    memory_format = MAPS_LAST

    def compute(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        codes, batch = fold(self.first(z, y), 1)
        maps = codes.view(-1, *self.start).contiguous(memory_format=self.memory_format)
        return self.body(maps).view(*batch, *self.image_shape)


class ConvEncoder(ImageEncoder):
    """The conv encoder. The label adds a learned bias per class to each of the first convolution's
    maps (`ClassBias`)."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, num_classes: int,
                 channels: int = 32, depth: int = 1, activation: str = "relu"):
        super().__init__()
        planes, height, width = image_shape
        sizes = resolutions(height, width)
        self.stem = nn.Conv2d(planes, channels, 3, padding=1)
        self.label = ClassBias(num_classes, channels)
        layers: list[nn.Module] = []
        width_in = channels
        for width_out in (channels, 2 * channels):
            layers += [ACTIVATIONS[activation](), nn.Conv2d(width_in, width_out, 3, stride=2, padding=1)]
            for _ in range(depth - 1):
                layers += [ACTIVATIONS[activation](), nn.Conv2d(width_out, width_out, 3, padding=1)]
            width_in = width_out
        layers += [ACTIVATIONS[activation](), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = Dense(2 * channels * math.prod(sizes[-1]), out_features)
        self.description = f"conv {channels}-{2 * channels} channels, depth {depth}, {activation}"


class ConvDecoder(CodeDecoder):
    """The conv decoder. The label enters the first (dense) layer as a learned row per class
    (`ConditionalLinear`)."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int,
                 channels: int = 32, depth: int = 1, activation: str = "relu"):
        super().__init__()
        planes, height, width = image_shape
        sizes = resolutions(height, width)
        self.image_shape = tuple(image_shape)
        self.start = (2 * channels, *sizes[-1])
        self.first = ConditionalLinear(latent_dim, math.prod(self.start), num_classes)
        layers: list[nn.Module] = []
        width_in = 2 * channels
        for small, big in ((sizes[2], sizes[1]), (sizes[1], sizes[0])):
            layers += [ACTIVATIONS[activation](), upsample(width_in, channels, small, big)]
            for _ in range(depth - 1):
                layers += [ACTIVATIONS[activation](), nn.Conv2d(channels, channels, 3, padding=1)]
            width_in = channels
        layers += [ACTIVATIONS[activation](), nn.Conv2d(channels, planes, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.description = f"transposed conv {2 * channels}-{channels} channels, depth {depth}, {activation}"
