"""Networks: the parts a family is put together from, chosen by `--network`.

An encoder network maps images x [*batch, C, H, W] (and a label y, for a family that has one) to
[*batch, out_features], the parameters of q(z | x[, y]); a decoder network maps codes
z [*batch, d] (and y) to [*batch, C, H, W], the parameters of p(x | z[, y]) per pixel. How a
network reads an image is its own business: the MLP flattens it, the convolutional networks fold
the batch dimensions into one. A [samples, batch, d] draw of z goes through a decoder as it is,
with y [batch]: nothing is copied once per sample.

    layers.py   activations, Dense, ConditionalLinear, ClassBias (how a label enters)
    mlp.py      --network mlp
    conv.py     --network conv: strided convolutions down, transposed convolutions up
    resnet.py   --network resnet: residual blocks, in the spirit of Kingma et al. (2016)

Each network's constructor takes the settings it uses by name (hidden, channels, depth,
activation); `build_networks` hands it those.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from .conv import ConvDecoder, ConvEncoder
from .layers import ACTIVATIONS, ConditionalLinear, Dense, ReLU
from .mlp import MLPDecoder, MLPEncoder
from .resnet import ResNetDecoder, ResNetEncoder

# name -> (encoder constructor, decoder constructor); a new network adds a line here and a choice of --network
NETWORKS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module]]] = {
    "mlp": (MLPEncoder, MLPDecoder),
    "conv": (ConvEncoder, ConvDecoder),
    "resnet": (ResNetEncoder, ResNetDecoder),
}


def _settings_of(constructor: Callable, settings: dict) -> dict:
    names = inspect.signature(constructor).parameters
    return {name: value for name, value in settings.items() if name in names}


def build_networks(network: str, image_shape: tuple[int, int, int], latent_dim: int, encoder_outputs: int,
                   num_classes: int, **settings) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) of kind `network`: the encoder gives `encoder_outputs` numbers per image.

    settings: the architecture settings (hidden, channels, depth, activation); each network takes
    the ones its constructor names.
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    if settings.get("activation", "relu") not in ACTIVATIONS:
        raise ValueError(f"unknown activation {settings['activation']!r}")
    make_encoder, make_decoder = NETWORKS[network]
    return (make_encoder(image_shape, encoder_outputs, num_classes, **_settings_of(make_encoder, settings)),
            make_decoder(latent_dim, image_shape, num_classes, **_settings_of(make_decoder, settings)))


def build_classifier(network: str, image_shape: tuple[int, int, int], num_classes: int, **settings) -> nn.Module:
    """A classifier of kind `network`: images [*batch, C, H, W] -> logits [*batch, num_classes].

    It is the network's encoder with `num_classes` outputs and no label input, so every network
    that encodes also classifies (q(y | x) of the semi-supervised M2).
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    make_encoder = NETWORKS[network][0]
    return make_encoder(image_shape, num_classes, 0, **_settings_of(make_encoder, settings))


__all__ = ["ACTIVATIONS", "NETWORKS", "ConditionalLinear", "Dense", "ReLU", "build_classifier", "build_networks"]
