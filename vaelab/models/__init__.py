"""The models wing: the model interface, the networks, the pixel likelihoods and the families.

    interface.py    Model, ClassConditional, Classifies, Simulates, FixesPrior, Densities, Terms: what a family declares
    base.py         Family: the module a family may build on (its default objective)
    networks.py     encoder and decoder networks (--network), built as parts: layers, mlp, conv, resnet
    priors.py       p(z) (--prior): the standard Gaussian, the VampPrior; Gaussian densities and draws
    latents.py      the Gaussian families' latents: one layer (perhaps with an IAF), or a hierarchy
    flows.py        normalising flows: the IAF posterior (--posterior iaf), the RealNVP prior (--prior flow)
    likelihoods.py  p(x | z) per pixel (--likelihood)
    families.py     VAE, CVAE and M2 (--model), put together from those parts
    auxiliary.py    ADGM (--model adgm): Maaløe et al.'s auxiliary deep generative model, semi-supervised
"""

from __future__ import annotations

from .auxiliary import ADGM
from .base import Family
from .families import CVAE, FAMILIES, M2, POSTERIORS, VAE
from .latents import INFERENCES
from .interface import (Bound, ClassConditional, Classifies, DataFacts, Densities, FixesPrior, Model, Noise,
                        Simulated, Simulates, Terms, class_conditional, prior_fixed)
from .interface import FAMILY_MEMBERS
from .likelihoods import LIKELIHOODS, decoder_mean, mean_words
from .networks import ACTIVATIONS, NETWORKS, ConditionalLinear, ReLU
from .priors import PRIORS, GaussianMixture, analytic_kl, describe_prior, rsample


def register_family(name: str, family: type) -> None:
    """Make `family` the choice `--model name`: a class with the members of `Model` (`Family`
    gives the defaults of what a family declares) and a `for_data(data: DataFacts, **settings)`
    constructor. A class that lacks one raises TypeError naming them."""
    missing = [member for member in ("for_data", *FAMILY_MEMBERS) if not hasattr(family, member)]
    if missing:
        raise TypeError(f"family {name!r} ({family.__name__}) lacks {', '.join(sorted(missing))}: build it on "
                        "vaelab.models.Family, which gives the defaults")
    FAMILIES[name] = family


def family_settings(family: str) -> tuple[str, ...]:
    """The names of the settings family `family` (--model) takes."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model {family!r}; choose one of {', '.join(FAMILIES)}")
    return tuple(FAMILIES[family].settings)


def build_model(family: str, image_shape: tuple[int, int, int], num_classes: int, train_images: int | None = None,
                labelled_images: int | None = None, labelled_batch: int = 0, **settings) -> Model:
    """A new model of `family` (--model) for images of `image_shape` (C, H, W) in `num_classes` classes.

    train_images, labelled_images, labelled_batch: how many images it is built to train on, how many
    of them keep their label, and how many labelled images are in every step (None, None, 0: it is
    built to be loaded; see `DataFacts`). settings: values of the
    settings the family takes (`family_settings`), and only those; what is not given, or None,
    takes the family's own default.
    """
    wanted = family_settings(family)
    unknown = sorted(name for name in settings if name not in wanted)
    if unknown:
        raise ValueError(f"model {family!r} does not take {', '.join(unknown)}; it takes {', '.join(wanted)}")
    given = {name: value for name, value in settings.items() if value is not None}
    data = DataFacts(tuple(image_shape), num_classes, train_images, labelled_images, labelled_batch)
    return FAMILIES[family].for_data(data, **given)


register_family("adgm", ADGM)

__all__ = ["ACTIVATIONS", "ADGM", "CVAE", "FAMILIES", "GaussianMixture", "INFERENCES", "LIKELIHOODS", "M2", "NETWORKS", "POSTERIORS", "PRIORS", "VAE",
           "Bound", "ClassConditional", "Classifies", "ConditionalLinear", "DataFacts", "Densities", "Family", "FixesPrior", "Model",
           "Noise", "ReLU", "Simulated", "Simulates", "Terms", "analytic_kl", "build_model", "class_conditional", "decoder_mean",
           "describe_prior", "family_settings", "mean_words", "prior_fixed", "register_family",
           "rsample"]
