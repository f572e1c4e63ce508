"""The models wing: the model interface, the networks, the pixel likelihoods and the families.

    interface.py    Model, ClassConditional, Classifies: what every family declares and may add
    networks.py     encoder and decoder networks (--network), built as parts
    likelihoods.py  p(x | z) per pixel (--likelihood)
    families.py     VAE and CVAE (--model), put together from those parts
"""

from __future__ import annotations

from .families import CVAE, FAMILIES, VAE
from .interface import ClassConditional, Classifies, Model, class_conditional
from .likelihoods import LIKELIHOODS, decoder_mean
from .networks import ACTIVATIONS, NETWORKS, ConditionalLinear, ReLU


def build_model(family: str, image_shape: tuple[int, int, int], num_classes: int, *, latent_dim: int = 40,
                network: str = "mlp", hidden: tuple[int, ...] = (500, 500), activation: str = "relu",
                likelihood: str = "bernoulli") -> Model:
    """A new model of `family` (--model) for images of `image_shape` (C, H, W) in `num_classes` classes."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family].for_data(image_shape, num_classes, latent_dim=latent_dim, network=network,
                                     hidden=tuple(hidden), activation=activation, likelihood=likelihood)


__all__ = ["ACTIVATIONS", "CVAE", "FAMILIES", "LIKELIHOODS", "NETWORKS", "VAE", "ClassConditional", "Classifies",
           "ConditionalLinear", "Model", "ReLU", "build_model", "class_conditional", "decoder_mean"]
