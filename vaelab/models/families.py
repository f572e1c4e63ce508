"""The model families: Kingma & Welling's VAE, the class-conditional VAE and the semi-supervised M2.

Each is put together from an encoder network and a decoder network (`networks.NETWORKS`, chosen
by `--network`) and a pixel likelihood (`likelihoods.LIKELIHOODS`), and declares the members of
`interface.Model` (the CVAE also those of `interface.ClassConditional`, M2 also `interface.Classifies`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from .likelihoods import EQUATIONS, LIKELIHOODS, pixel_distribution
from .networks import build_classifier, build_networks
from .priors import PRIORS, GaussianMixture, PseudoInputs


class VAE(nn.Module):
    """Kingma & Welling's VAE: z ~ N(0, I_d), x | z ~ p(x | f_θ(z)), q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x)).

    The encoder network gives μ and log σ² (2d numbers per image); the decoder network gives the
    pixel parameters of p(x | z), every channel's pixels (Bernoulli logits for binarised images, or a
    Gaussian or continuous Bernoulli for intensities in [0, 1], grey or colour).
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 40, network: str = "mlp",
                 likelihood: str = "bernoulli", prior: str = "standard", pseudo_inputs: int = 500,
                 _label_classes: int = 0, **network_settings):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.encoder_net, self.decoder_net = build_networks(network, self.image_shape, latent_dim, 2 * latent_dim,
                                                            _label_classes, **network_settings)
        # the VampPrior's pseudo-inputs (see priors.py); None for the standard Gaussian prior
        self.pseudo_inputs = PseudoInputs(pseudo_inputs, self.image_shape, _label_classes) if prior == "vamp" else None
        if likelihood == "gaussian":  # one learned scale per pixel (flat, as vaelab 0.1 stored it)
            self.decoder_raw_scale = nn.Parameter(torch.zeros(math.prod(self.image_shape)))
        self.register_buffer("prior_loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("prior_scale", torch.ones(latent_dim), persistent=False)

    @classmethod
    def for_data(cls, image_shape: tuple[int, int, int], num_classes: int, **architecture) -> "VAE":
        """The family for a dataset of `image_shape` images; it has no use for the classes."""
        return cls(image_shape, **architecture)

    def prior(self) -> Distribution:
        """p(z): N(0, I), or the VampPrior (1/K) sum_k q(z | u_k): batch shape [], event [d]."""
        if self.pseudo_inputs is None:
            return Independent(Normal(self.prior_loc, self.prior_scale, validate_args=False), 1)
        q = self.encoder(*self.pseudo_inputs())  # batch [K]
        return GaussianMixture(q.base_dist.loc, q.base_dist.scale)

    def _prior_equation(self, given: str) -> str:
        if self.pseudo_inputs is None:
            return f"z ~ N(0, I_d),  d = {self.latent_dim}"
        count = self.pseudo_inputs.values.shape[0]
        return (f"z ~ (1/K) Σ_k q_φ(z | u_k{given}),  d = {self.latent_dim}, K = {count} learned pseudo-inputs "
                "(VampPrior)")

    def encoder(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z | x) = N(μ, diag exp(log σ²)) for x [*batch, C, H, W] in [0, 1]; y is not used."""
        return self._gaussian(self.encoder_net(x))

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z) for z [*batch, d]: batch shape [*batch], event [C, H, W]; y is not used."""
        return self._pixels(self.decoder_net(z))

    def _gaussian(self, outputs: torch.Tensor) -> Distribution:
        mu, log_var = outputs.chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)

    def _pixels(self, logits: torch.Tensor) -> Distribution:
        return pixel_distribution(self.likelihood, logits, getattr(self, "decoder_raw_scale", None))

    def equations(self) -> list[str]:
        return [
            self._prior_equation(""),
            "x | z ~ " + EQUATIONS[self.likelihood].format(inputs="z") + f",  f_θ: {self.decoder_net.description}",
            f"q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x)),  {self.encoder_net.description}",
            "ELBO(x) = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)) ≤ log p_θ(x)",
        ]


class CVAE(VAE):
    """The class-conditional VAE: y ~ Categorical(π), π_j = 1/classes, z ~ N(0, I), x | y, z ~ p(x | f_θ(z, y)).

    q(z | x, y) is a diagonal Gaussian; the label enters the first layer of both networks as
    onehot(y) (see `networks.ConditionalLinear`).
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, latent_dim: int = 40, **architecture):
        super().__init__(image_shape, latent_dim, _label_classes=num_classes, **architecture)
        self.num_classes = num_classes

    @classmethod
    def for_data(cls, image_shape: tuple[int, int, int], num_classes: int, **architecture) -> "CVAE":
        return cls(image_shape, num_classes, **architecture)

    def encoder(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z | x, y) for x [*batch, C, H, W] and y [*batch] (or a suffix of it): event [d]."""
        return self._gaussian(self.encoder_net(x, y))

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z, y) for z [*batch, d] and y: batch shape [*batch], event [C, H, W]."""
        return self._pixels(self.decoder_net(z, y))

    def class_log_prior(self) -> torch.Tensor:
        """log π: [num_classes], uniform (π_j = 1 / num_classes)."""
        return torch.full((self.num_classes,), -math.log(self.num_classes), device=self.prior_loc.device)

    def equations(self) -> list[str]:
        return [
            f"y ~ Categorical(π),  π_j = 1/{self.num_classes}",
            self._prior_equation(", y_k"),
            "x | y, z ~ " + EQUATIONS[self.likelihood].format(inputs="z, onehot(y)")
            + f",  f_θ: {self.decoder_net.description}",
            f"q_φ(z | x, y) = N(μ_φ(x, y), diag σ²_φ(x, y)),  {self.encoder_net.description}",
            "ELBO(x, y) = E_q[log p_θ(x | y, z)] − KL(q_φ(z | x, y) ‖ p(z)) ≤ log p_θ(x | y)",
            "log p(x) = log Σ_y π_y p_θ(x | y);   ŷ(x) = argmax_y π_y p_θ(x | y)",
        ]


class M2(CVAE):
    """Kingma et al. (2014)'s semi-supervised M2: the CVAE's generative model, and a classifier q(y | x).

    Where an image comes without its label, y is a latent variable: the bound on log p(x) sums the
    CVAE's bound over the classes, weighted by q(y | x) (`objectives.unlabelled_elbo`). The
    classifier is the chosen network's encoder with one output per class (`networks.build_classifier`).
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, latent_dim: int = 40,
                 network: str = "mlp", **architecture):
        super().__init__(image_shape, num_classes, latent_dim, network=network, **architecture)
        self.classifier_net = build_classifier(network, self.image_shape, num_classes, **architecture)

    def classifier(self, x: torch.Tensor) -> Categorical:
        """q(y | x) for images x [*batch, C, H, W]: batch shape [*batch], num_classes categories."""
        return Categorical(logits=self.classifier_net(x), validate_args=False)

    def equations(self) -> list[str]:
        lines = super().equations()
        return lines[:-1] + [
            f"q_φ(y | x) = Categorical(softmax g_φ(x)),  g_φ: {self.classifier_net.description}",
            "labelled:  log p(x, y) ≥ ELBO(x, y) + log π_y,  trained with + α log q_φ(y | x)",
            "unlabelled:  log p(x) ≥ Σ_y q_φ(y | x) [ELBO(x, y) + log π_y] + H(q_φ(y | x))",
            lines[-1].replace("ŷ(x) = argmax_y π_y p_θ(x | y)", "ŷ(x) = argmax_y q_φ(y | x) or argmax_y π_y p_θ(x | y)"),
        ]


# name (--model) -> family; a new family adds a line here
FAMILIES: dict[str, type[VAE]] = {"vae": VAE, "cvae": CVAE, "m2": M2}
