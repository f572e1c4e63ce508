"""The model families: Kingma & Welling's VAE and the class-conditional VAE (M2 builds on it: semi_supervised.py).

Each is put together from an encoder network and a decoder network (`networks.NETWORKS`, chosen
by `--network`), a prior (`priors.py`) and a pixel likelihood (`likelihoods.LIKELIHOODS`), and
declares the members of `interface.Model` (the CVAE also those of `interface.ClassConditional`). Their latent is one diagonal Gaussian z, so the base noise is
N(0, I_d), a draw is z = μ + σ ε and its log q comes from ε in the same pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..errors import VaelabError
from .base import Family
from .flows import RealNVP
from .interface import DataFacts, Densities, Latent, Simulated
from .hierarchy import INFERENCES, AncestralPrior, LatentHierarchy
from .latents import GaussianLatent
from .likelihoods import EQUATIONS, LIKELIHOODS, MEAN_WORDS, pixel_distribution
from .layers import ACTIVATIONS
from .networks import GIVEN, NETWORKS, Network, build_networks
from .priors import PRIORS, GaussianMixture, PseudoInputs, rsample
from .settings import MAX_WIDTH, Setting

POSTERIORS = ("gaussian", "iaf")

# the settings of the Gaussian families (VAE, CVAE, M2), beside those of the network they are built from
GAUSSIAN_SETTINGS = {
    "latent_dim": Setting(int, 40, "latent size d", minimum=1, maximum=MAX_WIDTH),
    "latent_dims": Setting(tuple, None, "sizes of a hierarchy's stochastic layers, z_1 (read by the decoder) first, "
                           "e.g. 64,32 (instead of --latent-dim)", minimum=1, maximum=MAX_WIDTH, optional=True,
                           example="64,32"),
    "inference": Setting(str, "top-down", "how q infers a hierarchy (--latent-dims): top-down (the ladder VAE's "
                         "precision-weighted merge, Sønderby et al.) or bottom-up (Burda et al.)", choices=INFERENCES),
    "network": Setting(str, "mlp", "the encoder and decoder networks: mlp, conv, resnet or one registered with "
                       "vaelab.register_network", registry=NETWORKS, unlisted=(GIVEN,)),
    "likelihood": Setting(str, "bernoulli", "bernoulli (binarised data), gaussian or continuous-bernoulli (grayscale)",
                          choices=LIKELIHOODS),
    "posterior": Setting(str, "gaussian", "q(z | x): gaussian (one diagonal Gaussian) or iaf (the Gaussian's draw "
                         "through inverse autoregressive flow steps fed a context from the encoder)",
                         choices=POSTERIORS),
    "flow_steps": Setting(int, 2, "IAF steps of --posterior iaf", minimum=1, maximum=64),
    "flow_hidden": Setting(int, 320, "hidden units of each flow step's networks (the IAF's MADEs and context, the flow "
                           "prior's coupling layers)", minimum=1, maximum=MAX_WIDTH),
    "prior": Setting(str, "standard", "p(z): standard (N(0, I)), vamp (the VampPrior, a mixture of the encoder's "
                     "posteriors at learned pseudo-inputs) or flow (a RealNVP flow from N(0, I))", choices=PRIORS),
    "pseudo_inputs": Setting(int, 500, "pseudo-inputs K of the VampPrior", minimum=1, maximum=10_000),
    "prior_flow_steps": Setting(int, 4, "affine coupling layers of --prior flow", minimum=1, maximum=64),
}
def unused_flow_settings(settings: Mapping) -> set[str]:
    """The flows' settings that the others switch off: flow_steps without posterior iaf,
    prior_flow_steps without prior flow, flow_hidden without either."""
    iaf, flow_prior = settings.get("posterior") == "iaf", settings.get("prior") == "flow"
    return {name for name, unused in (("flow_steps", not iaf), ("prior_flow_steps", not flow_prior),
                                      ("flow_hidden", not iaf and not flow_prior)) if unused}


def kingma_welling_vae(latent_dim: int) -> dict:
    """The model settings of Kingma & Welling (2014)'s MNIST VAE with latent size `latent_dim`: one
    hidden layer of 500 tanh units each way and a Bernoulli decoder (`vaelab study`)."""
    return {"model": "vae", "latent_dim": latent_dim, "hidden": (500,), "activation": "tanh",
            "likelihood": "bernoulli"}


def check_flow_settings(settings: Mapping, defaults: Mapping) -> None:
    """VaelabError where a flow's size is set without its flow: flow_steps without posterior iaf,
    prior_flow_steps without prior flow (both families with flows share the rule)."""
    for name, needs, value in (("flow_steps", "posterior", "iaf"), ("prior_flow_steps", "prior", "flow")):
        if name in settings and settings[name] != defaults[name].default and settings[needs] != value:
            raise VaelabError(f"{{{name}}} is a setting of {{{needs}}} {value}, not of {{{needs}}} "
                              f"{settings[needs]}: drop it, or use {{{needs}}} {value}")


class VAE(Family):
    """Kingma & Welling's VAE: z ~ N(0, I_d), x | z ~ p(x | f_θ(z)), q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x)).

    The encoder network gives μ and log σ² (2d numbers per image); the decoder network gives the
    pixel parameters of p(x | z), every channel's pixels (Bernoulli logits for binarised images, or a
    Gaussian or continuous Bernoulli for intensities in [0, 1], grey or colour).

    Beyond one Gaussian (`latents.py`): posterior="iaf" sends the Gaussian's draw through
    `flow_steps` inverse autoregressive flow steps (MADEs of `flow_hidden` units fed a context h(x)
    from the encoder), so q(z | x) is no longer one Gaussian and its KL is estimated at the draw;
    latent_dims (two or more sizes, z_1 first) makes z a hierarchy of Gaussian layers, inferred
    top-down or bottom-up (`inference`). The prior of the top layer is N(0, I), the VampPrior or a
    RealNVP flow of `prior_flow_steps` coupling layers (prior="flow").

    Networks as parts (a registered network, or your own modules handed to `vaelab.train`): the
    encoder gets images x [n, C, H, W] in [0, 1] (binarised or grey, as the run's pixels are) and
    returns [n, E]: for one Gaussian z, E = 2d, the mean μ and then log σ² of q(z | x); with an
    IAF posterior, E = 2d + flow_hidden (the flow's context h(x) last); for a hierarchy, what
    `hierarchy.LatentHierarchy.encoder_outputs` says. The decoder gets codes z [n, d] (z_1 of a
    hierarchy) and returns [n, C, H, W] logits: σ(logits) is the pixels' Bernoulli probability,
    Gaussian mean or continuous-Bernoulli parameter. A family with a class label (the CVAE, M2)
    calls both with the labels too, (x, y) and (z, y), y [n] int64 classes: where the label enters
    is the network's choice. M2's classifier gets x [n, C, H, W] alone and returns [n, classes]
    logits of q(y | x). vaelab's own networks take any batch shape; yours see one batch
    dimension (`networks.UserNetwork` folds the others in and out), and a wrong output shape is a
    one-line error saying which shape to return.
    """

    settings = GAUSSIAN_SETTINGS

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 40, network: "str | Network" = "mlp",
                 likelihood: str = "bernoulli", prior: str = "standard", pseudo_inputs: int = 500,
                 posterior: str = "gaussian", flow_steps: int = 2, flow_hidden: int = 320, prior_flow_steps: int = 4,
                 latent_dims: tuple[int, ...] | None = None, inference: str = "top-down", _label_classes: int = 0,
                 **network_settings):
        """network: a name in `networks.NETWORKS` (or a `networks.Network`); network_settings: the
        settings that network declares (hidden and activation for mlp, ...)."""
        super().__init__()
        network_settings = {name: value for name, value in network_settings.items() if value is not None}
        activation = network_settings.get("activation", "relu")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
        if posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {posterior!r}; choose one of {', '.join(POSTERIORS)}")
        self.image_shape = tuple(image_shape)
        self.likelihood = likelihood
        dims = tuple(latent_dims) if latent_dims else (latent_dim,)
        if len(dims) > 1:
            if posterior != "gaussian":
                raise ValueError("an IAF posterior is for one stochastic layer, not a hierarchy")
            self.latents = LatentHierarchy(dims, inference, activation)
        else:
            self.latents = GaussianLatent(dims[0], flow_steps if posterior == "iaf" else 0, flow_hidden)
        self.latent_dim, top = dims[0], dims[-1]  # z_1, what the decoder reads; z_L, what the prior is over
        self.encoder_net, self.decoder_net = build_networks(network, self.image_shape, self.latent_dim,
                                                            self.latents.encoder_outputs, _label_classes,
                                                            **network_settings)
        # the VampPrior's pseudo-inputs (see priors.py), the flow prior's coupling layers; None for N(0, I)
        self.pseudo_inputs = PseudoInputs(pseudo_inputs, self.image_shape, _label_classes) if prior == "vamp" else None
        self.prior_flow = RealNVP(top, prior_flow_steps, flow_hidden) if prior == "flow" else None
        if likelihood == "gaussian":  # one learned scale per pixel (flat, as vaelab 0.1 stored it)
            self.decoder_raw_scale = nn.Parameter(torch.zeros(math.prod(self.image_shape)))
        self.register_buffer("prior_loc", torch.zeros(top), persistent=False)
        self.register_buffer("prior_scale", torch.ones(top), persistent=False)
        self._fixed_components: tuple[torch.Tensor, torch.Tensor] | None = None  # see fixed_prior

    @classmethod
    def for_data(cls, data: DataFacts, **settings) -> "VAE":
        """The family for a dataset of `data.image_shape` images; it has no use for the classes."""
        return cls(data.image_shape, **settings)

    @classmethod
    def check_settings(cls, settings: Mapping, config) -> None:
        """The rules between the Gaussian families' settings (`Family.check_settings`): the likelihood
        and the pixels, a flow's size only with its flow, a hierarchy's rules, the priors offered."""
        super().check_settings(settings, config)
        declared = cls.settings
        if settings["likelihood"] == "bernoulli" and config.binarize == "none":
            raise VaelabError("{likelihood} bernoulli needs binarised pixels: a Bernoulli 'likelihood' of grayscale "
                              "pixels is not a likelihood; use {binarize} dynamic/static, or {likelihood} gaussian "
                              "or continuous-bernoulli with {binarize} none")
        if settings["likelihood"] != "bernoulli" and config.binarize != "none":
            raise VaelabError(f"{{likelihood}} {settings['likelihood']} models grayscale pixels: use it with "
                              "{binarize} none")
        check_flow_settings(settings, declared)
        layers = settings["latent_dims"] or (settings["latent_dim"],)
        if settings["latent_dims"] is not None:
            if settings["latent_dim"] != declared["latent_dim"].default:
                raise VaelabError("{latent_dims} gives every layer's size, z_1's too: drop {latent_dim}")
            if len(layers) > 1 and settings["posterior"] != "gaussian":
                raise VaelabError(f"{{posterior}} {settings['posterior']} is for one stochastic layer: use it without "
                                  "{latent_dims}, or a hierarchy with {posterior} gaussian")
        if len(layers) < 2 and settings["inference"] != declared["inference"].default:
            raise VaelabError("{inference} is how a hierarchy is inferred: use it with {latent_dims} of two or more "
                              "sizes")
        if settings["prior"] == "flow" and layers[-1] < 2:
            raise VaelabError("{prior} flow couples half of z with the other half: it needs a top layer of 2 or more "
                              "({latent_dim} or the last of {latent_dims})")

    @classmethod
    def settings_in_effect(cls, settings: Mapping) -> dict:
        """Its settings without those the others switch off: the flows' (`unused_flow_settings`),
        pseudo_inputs without the VampPrior, a hierarchy's without one (latent_dims, inference), or
        latent_dim with one; of modules handed over, a classifier it was not given."""
        layers = settings.get("latent_dims") or (settings.get("latent_dim"),)
        unused = unused_flow_settings(settings) | {
            name for name, off in (("pseudo_inputs", settings.get("prior") != "vamp"),
                                   ("inference", len(layers) < 2),
                                   ("latent_dims", settings.get("latent_dims") is None),
                                   ("latent_dim", settings.get("latent_dims") is not None),
                                   ("classifier", settings.get("network") == GIVEN and settings.get("classifier") is None))
            if off}
        return {name: value for name, value in settings.items() if name not in unused}

    code_words = "E_q[z]"

    @property
    def code_dim(self) -> int:
        return self.latent_dim

    @property
    def pixel_words(self) -> str:
        """The decoder's mean image in words: "Bernoulli means", "Gaussian means", ..."""
        return MEAN_WORDS[self.likelihood]

    def noise_shape(self, labelled: bool = True) -> tuple[int, ...]:
        """(Σ_l d_l,): one N(0, I) draw of every layer per image and sample ((d,) for one layer)."""
        return (sum(self.latents.dims),)

    def top_prior(self) -> Distribution:
        """p(z_L) of the top layer (z itself for one layer): N(0, I), the VampPrior (1/K) sum_k q(z | u_k)
        or the RealNVP flow: batch shape [], event [d_L]."""
        if self.pseudo_inputs is not None:
            components = self._fixed_components
            if components is None:
                components = self.latents.top_gaussian(self.posterior(*self.pseudo_inputs()))
            return GaussianMixture(*components)  # K components
        if self.prior_flow is not None:
            return self.prior_flow.distribution()
        return Independent(Normal(self.prior_loc, self.prior_scale, validate_args=False), 1)

    @contextmanager
    def fixed_prior(self) -> Iterator[None]:
        """Within it, the VampPrior's components are made once, on entry, and every draw reuses them:
        its K pseudo-inputs go through the encoder once per evaluation (`interface.FixesPrior`) or
        once per training step, not once per batch of draws. Only while the parameters do not change;
        the components keep the gradient they have on entry. Nested, the outermost one holds; nothing
        changes for the other priors."""
        if self.pseudo_inputs is None or self._fixed_components is not None:
            yield
            return
        self._fixed_components = self.latents.top_gaussian(self.posterior(*self.pseudo_inputs()))
        try:
            yield
        finally:
            self._fixed_components = None

    def prior(self) -> Distribution:
        """p(z) of the code the decoder reads: the top prior for one layer, the hierarchy's ancestral
        prior over z_1 (`hierarchy.AncestralPrior`) for several: batch shape [], event [d_1]."""
        top = self.top_prior()
        return top if len(self.latents.dims) == 1 else AncestralPrior(self.latents, top)

    def _prior_equation(self, given: str) -> str:
        top = "z" if len(self.latents.dims) == 1 else f"z{len(self.latents.dims)}"
        size = f"d = {self.latents.dims[-1]}"
        if self.pseudo_inputs is not None:
            count = self.pseudo_inputs.values.shape[0]
            line = (f"{top} ~ (1/K) Σ_k q_φ({top} | u_k{given}),  {size}, K = {count} learned pseudo-inputs "
                    "(VampPrior)" + (", q's Gaussian before its flow" if getattr(self.latents, "flow", None) else ""))
        elif self.prior_flow is not None:
            line = (f"{top} = g_θ(u),  u ~ N(0, I_d),  {size};  g_θ: RealNVP, "
                    f"{len(self.prior_flow.layers)} affine coupling layers")
        else:
            line = f"{top} ~ N(0, I_d),  {size}"
        return line + self.latents.prior_equation()

    def encoder(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """The Gaussian of q(z | x[, y]) as a distribution: batch shape [*batch], event [d] (with an
        IAF, the Gaussian its flow starts from; for a hierarchy, the bottom layer's own Gaussian)."""
        loc, scale = self.posterior(x, y)[:2]
        return Independent(Normal(loc, scale, validate_args=False), 1)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The amortised pass of q(z | x) for x [*batch, C, H, W] in [0, 1] (`latents`): (μ, σ)
        [*batch, d] each for one Gaussian, and more for an IAF or a hierarchy; y is not used."""
        return self.latents.posterior(self.encoder_net(x))

    def densities(self, x: torch.Tensor, y: torch.Tensor | None, posterior: tuple[torch.Tensor, ...],
                  noise: torch.Tensor, closed_form: bool = False) -> Densities:
        """The latents from noise [samples, *batch, Σ d_l] (`latents.draw`): log p(x | z[, y]) and
        every layer's log q - log p ({"kl": ...} for one layer, "kl_z1", ... for a hierarchy).

        closed_form: a KL in closed form where there is one ([*batch]: one Gaussian against N(0, I));
        an IAF, the VampPrior or the flow prior keep the draw's value."""
        z, kl = self.latents.draw(posterior, noise, self.top_prior(), closed_form)
        return Densities(self.decoder(z, y).log_prob(x), kl)

    @property
    def information_images(self) -> int | None:
        """How many test images I(x; z) takes by default (`interface.ShowsLatents`): all for one
        Gaussian layer or a hierarchy, 100 for an IAF (`latents`)."""
        return self.latents.information_images

    def shown(self, x: torch.Tensor, y: torch.Tensor | None, posterior: tuple[torch.Tensor, ...],
              noise: torch.Tensor) -> dict[str, Latent]:
        """Every layer at the draws of noise [samples, *batch, Σ d_l] (`interface.ShowsLatents`):
        {"z": ...} for one layer, {"z1": ..., "zL": ...} for a hierarchy (`latents.shown`)."""
        return self.latents.shown(posterior, noise, self.top_prior())

    def log_posterior_pairs(self, posterior: tuple[torch.Tensor, ...],
                            values: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(latents = values_i | x_j[, y_j]) for every pair: [n, m] (`interface.ShowsLatents`)."""
        return self.latents.log_q_pairs(posterior, tuple(values[name] for name in self.latents.layer_names))

    def code(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of q(z | x[, y]) (through the IAF's steps, or down a hierarchy to z_1, every noise 0): [*batch, d]."""
        return self.latents.code(self.posterior(x, y))

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z) for z [*batch, d]: batch shape [*batch], event [C, H, W]; y is not used."""
        return self._pixels(self.decoder_net(z))

    def sample_codes(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """z ~ p(z): [count, d] (N(0, I), or the VampPrior's components and noise)."""
        with torch.no_grad():
            return rsample(self.prior(), (count,), generator)

    def simulate(self, count: int, generator: torch.Generator | None) -> Simulated:
        """`count` images from the model with the base noise of their latents (`interface.Simulated`):
        the labels (`_simulated_labels`), every latent layer from the prior, x from p(x | z_1[, y]),
        then q's draw inverted at x (`latents.noise_of`), all with `generator`."""
        with torch.no_grad():
            y = self._simulated_labels(count, generator)
            latents = self.latents.simulate(self.top_prior(), count, generator)
            x = rsample(self.decoder(latents[0], y), (), generator)
            return Simulated(x, y, self.latents.noise_of(self.posterior(x, y), latents))

    def _simulated_labels(self, count: int, generator: torch.Generator | None) -> torch.Tensor | None:
        return None

    given = "x"  # what q(z | ...) reads, in the words of the parts
    recon_words = "reconstruction term E_q[log p(x | z)]"

    def part_words(self) -> dict[str, str]:
        with torch.no_grad():
            words = self.latents.part_words(self.given, self.top_prior())
        return {"recon": self.recon_words, **words}

    def _elbo_equation(self, inputs: str, decoded: str, target: str) -> str:
        if len(self.latents.dims) == 1:
            return f"ELBO({inputs}) = E_q[log p_θ(x | {decoded})] − KL(q_φ(z | {inputs}) ‖ p(z)) ≤ {target}"
        top = len(self.latents.dims)
        return (f"ELBO({inputs}) = E_q[log p_θ(x | {decoded.replace('z', 'z1')})] − Σ_(l<{top}) E_q[log q_φ(z_l | …) "
                f"− log p_θ(z_l | z_(l+1))] − E_q[log q_φ(z{top} | …) − log p(z{top})] ≤ {target},  z = z1")

    def _posterior_equation(self, inputs: str) -> str:
        return self.latents.posterior_equation(inputs, self.encoder_net.description)

    def _pixels(self, logits: torch.Tensor) -> Distribution:
        return pixel_distribution(self.likelihood, logits, getattr(self, "decoder_raw_scale", None))

    def equations(self) -> list[str]:
        return [
            self._prior_equation(""),
            "x | z ~ " + EQUATIONS[self.likelihood].format(inputs="z") + f",  f_θ: {self.decoder_net.description}",
            self._posterior_equation("x"),
            self._elbo_equation("x", "z", "log p_θ(x)"),
        ]


class CVAE(VAE):
    """The class-conditional VAE: y ~ Categorical(π), π_j = 1/classes, z ~ N(0, I), x | y, z ~ p(x | f_θ(z, y)).

    q(z | x, y) is a diagonal Gaussian; the label enters the first layer of both networks as
    onehot(y) (see `networks.ConditionalLinear`).
    """

    given = "x, y"
    recon_words = "reconstruction term E_q[log p(x | y, z)]"

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, latent_dim: int = 40, **settings):
        super().__init__(image_shape, latent_dim, _label_classes=num_classes, **settings)
        self.num_classes = num_classes

    @classmethod
    def for_data(cls, data: DataFacts, **settings) -> "CVAE":
        return cls(data.image_shape, data.num_classes, **settings)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The amortised pass of q(z | x, y) for x [*batch, C, H, W] and y [*batch] (or a suffix of it):
        (μ, σ) [*batch, d] each for one Gaussian, and more for an IAF or a hierarchy (`latents`)."""
        return self.latents.posterior(self.encoder_net(x, y))

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z, y) for z [*batch, d] and y: batch shape [*batch], event [C, H, W]."""
        return self._pixels(self.decoder_net(z, y))

    def class_log_prior(self) -> torch.Tensor:
        """log π: [num_classes], uniform (π_j = 1 / num_classes)."""
        return torch.full((self.num_classes,), -math.log(self.num_classes), device=self.prior_loc.device)

    def _simulated_labels(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """y [count] ~ Categorical(π), int64, with `generator`."""
        return torch.multinomial(self.class_log_prior().exp(), count, replacement=True, generator=generator)

    def equations(self) -> list[str]:
        return [
            f"y ~ Categorical(π),  π_j = 1/{self.num_classes}",
            self._prior_equation(", y_k"),
            "x | y, z ~ " + EQUATIONS[self.likelihood].format(inputs="z, onehot(y)")
            + f",  f_θ: {self.decoder_net.description}",
            self._posterior_equation("x, y"),
            self._elbo_equation("x, y", "y, z", "log p_θ(x | y)"),
            "log p(x) = log Σ_y π_y p_θ(x | y);   ŷ(x) = argmax_y π_y p_θ(x | y)",
        ]
