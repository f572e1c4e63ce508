"""The models wing: the model interface, the networks, the pixel likelihoods and the families.

    interface.py    Model, ClassConditional, Classifies: what every family declares and may add
    networks.py     encoder and decoder networks (--network), built as parts: layers, mlp, conv, resnet
    priors.py       p(z) (--prior): the standard Gaussian, the VampPrior
    likelihoods.py  p(x | z) per pixel (--likelihood)
    families.py     VAE, CVAE and M2 (--model), put together from those parts
"""

from __future__ import annotations

from .families import CVAE, FAMILIES, M2, VAE
from .interface import ClassConditional, Classifies, Model, class_conditional
from .likelihoods import LIKELIHOODS, decoder_mean, mean_words
from .networks import ACTIVATIONS, NETWORKS, ConditionalLinear, ReLU
from .priors import PRIORS, GaussianMixture, analytic_kl, describe_prior


def build_model(family: str, image_shape: tuple[int, int, int], num_classes: int, **architecture) -> Model:
    """A new model of `family` (--model) for images of `image_shape` (C, H, W) in `num_classes` classes.

    architecture: latent_dim, network, likelihood, prior, pseudo_inputs and the network's settings
    (hidden, activation, channels, depth); what is not given takes its default, and a setting that
    is None means the network's own default.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model {family!r}; choose one of {', '.join(FAMILIES)}")
    given = {name: value for name, value in architecture.items() if value is not None}
    return FAMILIES[family].for_data(image_shape, num_classes, **given)


__all__ = ["ACTIVATIONS", "CVAE", "FAMILIES", "GaussianMixture", "LIKELIHOODS", "M2", "NETWORKS", "PRIORS", "VAE", "ClassConditional", "Classifies",
           "ConditionalLinear", "Model", "ReLU", "analytic_kl", "build_model", "class_conditional", "decoder_mean",
           "describe_prior", "mean_words"]
