"""The models wing: the model interface, the networks, the pixel likelihoods and the families.

    interface.py    Model, ClassConditional, Classifies, Simulates, FixesPrior, ShowsLatents, Densities, Terms: what a family declares
    base.py         Family: the module a family may build on (its default objective)
    networks.py     encoder and decoder networks (--network), built as parts: layers, mlp, conv, resnet
    priors.py       p(z) (--prior): the standard Gaussian, the VampPrior; Gaussian densities and draws
    latents.py      the Gaussian families' latents: one layer (perhaps with an IAF)
    hierarchy.py    a hierarchy of Gaussian layers, top-down or bottom-up, and its ancestral prior
    joined.py       the auxiliary models' MLP whose first layer takes its inputs apart
    flows.py        normalising flows: the IAF posterior (--posterior iaf), the RealNVP prior (--prior flow)
    likelihoods.py  p(x | z) per pixel (--likelihood)
    families.py     VAE and CVAE (--model), put together from those parts, and their settings
    semi_supervised.py  M2 (--model m2): the CVAE with a classifier q(y | x), the label summed out
    auxiliary.py    ADGM (--model adgm): Maaløe et al.'s auxiliary deep generative model, semi-supervised
    skip.py         SDGM (--model sdgm): their skip deep generative model, a in p(x | a, y, z)
    settings.py     Setting: a setting's type, default, limits and help, and the check of a value
    registry.py     FAMILIES, register_family, the settings a run's family and network take, build_model
"""

from __future__ import annotations

from .auxiliary import ADGM
from .skip import SDGM
from .base import Family
from .families import CVAE, POSTERIORS, VAE
from .semi_supervised import M2
from .hierarchy import INFERENCES
from .interface import (Bound, ClassConditional, Classifies, DataFacts, Densities, FixesPrior, Latent, Model, Noise,
                        ShowsLatents, Simulated, Simulates, Terms, class_conditional, prior_fixed, read)
from .interface import FAMILY_MEMBERS
from .likelihoods import LIKELIHOODS, decoder_mean, mean_words
from .networks import (ACTIVATIONS, GIVEN, NETWORKS, ConditionalLinear, Network, ReLU, UserNetwork, given_network,
                       given_settings, register_network)
from .priors import PRIORS, GaussianMixture, analytic_kl, describe_prior, rsample
from .registry import (FAMILIES, build_model, check_model_settings, check_registered, check_stored_registered,
                       family_settings, imports_of, model_settings_owners, network_of, register_family, settings_of)
from .settings import Setting

__all__ = ["ACTIVATIONS", "ADGM", "CVAE", "FAMILIES", "GaussianMixture", "INFERENCES", "LIKELIHOODS", "M2", "NETWORKS",
           "POSTERIORS", "PRIORS", "SDGM", "VAE", "Bound", "ClassConditional", "Classifies", "ConditionalLinear", "DataFacts",
           "Densities", "Family", "FixesPrior", "Latent", "Model", "Network", "Noise", "ReLU", "Setting", "ShowsLatents", "Simulated",
           "Simulates",
           "Terms", "analytic_kl", "build_model", "class_conditional", "decoder_mean", "describe_prior",
           "family_settings", "mean_words", "prior_fixed", "read", "register_family", "register_network", "rsample",
           "settings_of"]
