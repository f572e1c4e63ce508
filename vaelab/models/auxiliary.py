"""The auxiliary deep generative model (ADGM) of Maaløe et al. (2016), semi-supervised like M2.

An auxiliary latent a makes the variational posterior richer while the generative model of x
stays the CVAE's:

    p(y) p(z) p(x | y, z) p(a | x, y, z)          y ~ Categorical(π), z ~ N(0, I), a | x, y, z Gaussian
    q(a | x) q(y | a, x) q(z | a, y, x)            all diagonal Gaussian but y

Integrating a out of q gives a classifier q(y | x) = E_q(a|x)[q(y | a, x)] and a posterior over
z that is a mixture, not one Gaussian; p(a | x, y, z) is what the bound needs to stay a bound on
log p(x, y) = log ∫∫ p(x, y, z) p(a | x, y, z) da dz. Where the label is missing, it is summed
out exactly over the classes, as in M2, for each draw of a (one a for every class, as the
authors' code does).

Every network is an MLP whose first layer takes its inputs apart and adds them (`Joined`), so
the image's share of a first layer is computed once per image, not once per class and draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch.distributions import Categorical, Distribution, Independent, Normal

from .base import Family, class_weights, labelled_and_unlabelled, with_label
from .families import GAUSSIAN_SETTINGS, check_flow_settings, unused_flow_settings
from .semi_supervised import ALPHA, default_alpha
from .flows import InverseAutoregressiveFlow, RealNVP
from .interface import Bound, DataFacts, Densities, Latent, Noise, Simulated, Terms, read
from .latents import loc_scale
from .joined import Joined
from .layers import ACTIVATIONS
from .likelihoods import pixel_distribution
from .mlp import MLPDecoder
from .networks import ACTIVATION, HIDDEN
from .settings import MAX_WIDTH, Setting
from .priors import (gaussian_kl, gaussian_kl_units, gaussian_log_density, gaussian_log_density_pairs, rsample,
                     standard_log_density)


CLASSIFIER_DRAWS = 100  # draws of a that q(y | x) averages q(y | a, x) over (Maaløe et al.'s test: 100)
CLASSIFIER_CHUNK = 20  # of them at a time: memory of 20 x batch x hidden


class ADGM(Family):
    """Maaløe et al. (2016)'s auxiliary deep generative model for images with few labels.

    latent_dim = |z|, aux_dim = |a| (default |z|); every network an MLP with the `hidden` widths
    and `activation`; binarised pixels (Bernoulli). `alpha` weighs log q(y | x) of every labelled
    image in what is maximised, as in M2 (`semi_supervised.default_alpha`), with q(y | x) the mean of
    q(y | a_s, x) over the step's draws of a (`--samples`; the authors draw 5). The representative
    code is E_q[z] at a = E_q[a], and `classifier` averages q(y | a, x) over 100 fixed draws of a.

    As in the Gaussian families, posterior="iaf" sends the draw of z from q(z | a, y, x) through
    `flow_steps` IAF steps (context: `flow_hidden` more outputs of that network), and prior="flow"
    makes p(z) a RealNVP of `prior_flow_steps` coupling layers; the KL of z is then estimated at
    the draw. (The VampPrior and hierarchies of z are not offered: a, y and z already make the
    ADGM's stack, and its q(z | a, y, x) has no Gaussian at a pseudo-input alone.)
    """

    priors = ("standard", "flow")
    # M2's recipe (docs/results.md): |z| = |a| = 50, one hidden layer of 500 softplus units in every
    # network, 200 unlabelled images per step beside the labelled batch, q reading the gray levels
    # of the binarised images, and the bound averaged over every binarisation of them. At equal
    # wall time on 2 cores the SDGM with it beat the SDGM with the authors' 2 x 500 ReLU units and
    # |z| = |a| = 100.
    settings = {
        "latent_dim": replace(GAUSSIAN_SETTINGS["latent_dim"], default=50),
        "aux_dim": Setting(int, None, "size of the auxiliary latent a (default: the latent size)", minimum=1,
                           maximum=MAX_WIDTH, optional=True),
        "hidden": replace(HIDDEN, default=(500,)), "activation": replace(ACTIVATION, default="softplus"),
        "alpha": ALPHA,
        **{name: GAUSSIAN_SETTINGS[name] for name in ("posterior", "flow_steps", "flow_hidden")},
        **{name: GAUSSIAN_SETTINGS[name] for name in ("prior", "prior_flow_steps")},  # prior: standard or flow
    }
    defaults = {"batch_size": 200, "encoder_input": "grayscale", "binarize": "expected"}
    objectives = ("elbo",)  # the missing label's sum shares a draw of a between the classes: an ELBO
    binary_pixels = True  # p(x | y, z) is Bernoulli: the images must be binarised
    pixel_words = "Bernoulli means"
    code_words = "E_q[z] at a = E_q[a]"

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, latent_dim: int = 50,
                 aux_dim: int | None = None, hidden: tuple[int, ...] = (500,), activation: str = "softplus",
                 alpha: float = 0.0, posterior: str = "gaussian", flow_steps: int = 2, flow_hidden: int = 320,
                 prior: str = "standard", prior_flow_steps: int = 4):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        if prior not in self.priors or posterior not in ("gaussian", "iaf"):
            raise ValueError(f"the ADGM takes prior standard or flow and posterior gaussian or iaf, not {prior!r}, "
                             f"{posterior!r}")
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.latent_dim, self.aux_dim, self.alpha = latent_dim, aux_dim or latent_dim, alpha
        pixels, a, z, hidden = math.prod(self.image_shape), self.aux_dim, latent_dim, tuple(hidden)
        self.aux_encoder = Joined((pixels,), hidden, 2 * a, activation)  # q(a | x)
        self.classifier_net = Joined((pixels, a), hidden, num_classes, activation)  # q(y | a, x)
        context = flow_hidden if posterior == "iaf" else 0  # the IAF's context h(a, y, x)
        self.z_encoder = Joined((pixels, a), hidden, 2 * z + context, activation, num_classes)  # q(z | a, y, x)
        self.flow = InverseAutoregressiveFlow(z, flow_steps, flow_hidden, context) if context else None
        self.prior_flow = RealNVP(z, prior_flow_steps, flow_hidden) if prior == "flow" else None
        self.aux_decoder = Joined((pixels, z), hidden, 2 * a, activation, num_classes)  # p(a | x, y, z)
        self.decoder_net = MLPDecoder(z, self.image_shape, num_classes, hidden, activation)  # p(x | y, z)
        # the classifier's draws of a (`classifier`): fixed, not saved (the same from seed 0 on every machine)
        noise = torch.randn(CLASSIFIER_DRAWS, self.aux_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("classifier_noise", noise, persistent=False)

    @classmethod
    def for_data(cls, data: DataFacts, alpha: float | None = None, **settings) -> "ADGM":
        return cls(data.image_shape, data.num_classes, alpha=default_alpha(data) if alpha is None else alpha,
                   **settings)

    @classmethod
    def settings_in_effect(cls, settings: Mapping) -> dict:
        """Its settings without the flows' that the others switch off (`families.unused_flow_settings`)."""
        unused = unused_flow_settings(settings)
        return {name: value for name, value in settings.items() if name not in unused}

    @classmethod
    def check_settings(cls, settings: Mapping, config) -> None:
        """Its priors (`Family.check_settings`), a flow's size only with its flow (`families.check_flow_settings`)."""
        super().check_settings(settings, config)
        check_flow_settings(settings, cls.settings)

    @property
    def code_dim(self) -> int:
        return self.latent_dim

    def noise_shape(self, labelled: bool = True) -> tuple[int, ...]:
        """(|a| + |z|,) for an image with its label; (|a| + classes |z|,) without: one a, and a z for
        every class it is taken in."""
        return (self.aux_dim + (1 if labelled else self.num_classes) * self.latent_dim,)

    def class_log_prior(self) -> torch.Tensor:
        """log π: [num_classes], uniform."""
        return torch.full((self.num_classes,), -math.log(self.num_classes), device=self._device())

    def _device(self) -> torch.device:
        return self.aux_encoder.first.linear.weight.device

    def _aux(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of q(a | x) for flat images [*batch, pixels]: [*batch, |a|] each."""
        return loc_scale(self.aux_encoder(flat))

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The amortised pass for x [*batch, C, H, W] and y (a suffix of the batch shape): (μ_a, σ_a)
        of q(a | x) [*batch, |a|], and the image's and label's shares of the first layers of
        q(z | a, y, x) and p(a | x, y, z) [*batch, hidden[0]]."""
        flat = x.flatten(-3)
        mu_a, sigma_a = self._aux(flat)
        return mu_a, sigma_a, self.z_encoder.head(flat, y), self.aux_decoder.head(flat, y)

    def densities(self, x: torch.Tensor, y: torch.Tensor | None, posterior: tuple[torch.Tensor, ...],
                  noise: torch.Tensor, closed_form: bool = False) -> Densities:
        """a = μ_a + σ_a ε_a, z = μ_z(a) + σ_z(a) ε_z for noise [samples, *batch, |a| + |z|]:
        log p(x | y, z), and {"kl": log q(z | a, y, x) - log p(z), "kl_a": log q(a | x) - log p(a | x, y, z)},
        [samples, *batch] each (closed_form: the first as KL(q(z | a, y, x) ‖ N(0, I)) given a)."""
        mu_a, sigma_a, z_head, *aux_head = posterior
        noise_a, noise_z = noise.split([self.aux_dim, self.latent_dim], dim=-1)
        a = mu_a + sigma_a * noise_a
        z, kl_z = self._z(self.z_encoder.finish(z_head, a), noise_z, closed_form)
        log_px = self._pixels(z, a, y).log_prob(x)
        mu_pa, sigma_pa = self._aux_prior(None, y, z, *aux_head)
        kl_a = gaussian_log_density(noise_a, sigma_a) - gaussian_log_density((a - mu_pa) / sigma_pa, sigma_pa)
        return Densities(log_px, {"kl": kl_z, "kl_a": kl_a})

    @property
    def information_images(self) -> int:
        """How many test images I(x; a, z) takes by default (`interface.ShowsLatents`): a pair of
        images is a pass of q(z | a, y, x)'s network (and with an IAF, its flow inverted)."""
        return 1000 if self.flow is None else 100

    def shown(self, x: torch.Tensor, y: torch.Tensor | None, posterior: tuple[torch.Tensor, ...],
              noise: torch.Tensor) -> dict[str, Latent]:
        """{"a": ..., "z": ...} at the draws of noise [samples, *batch, |a| + |z|] (`interface.ShowsLatents`):
        a's mean is μ_a; z's units have their KL in closed form given a where q(z | a, y, x) is one
        Gaussian and p(z) = N(0, I). a's KL has none: p(a | x, y, z) reads a z drawn given a."""
        mu_a, sigma_a, z_head = posterior[:3]
        noise_a, noise_z = noise.split([self.aux_dim, self.latent_dim], dim=-1)
        a = mu_a + sigma_a * noise_a
        outputs = self.z_encoder.finish(z_head, a)
        mu_z, sigma_z = loc_scale(outputs[..., : 2 * self.latent_dim])
        z, units = mu_z + sigma_z * noise_z, None
        if self.flow is not None:
            z = self.flow(z, outputs[..., 2 * self.latent_dim :])[0]
        elif self.prior_flow is None:
            units = gaussian_kl_units(mu_z, sigma_z, torch.zeros_like(mu_z), torch.ones_like(sigma_z))
        return {"a": Latent(a, mu_a, None, "kl_a"), "z": Latent(z, None, units, "kl")}

    def log_posterior_pairs(self, posterior: tuple[torch.Tensor, ...],
                            values: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(a_i | x_j) + log q(z_i | a_i, y_j, x_j) for values {"a": [n, |a|], "z": [n, |z|]} and
        the pass over m images: [n, m] (`interface.ShowsLatents`)."""
        mu_a, sigma_a, z_head = posterior[:3]
        a, z, d = values["a"], values["z"], self.latent_dim
        outputs = self.z_encoder.finish(z_head[None], a[:, None])  # [n, m, 2|z| (+ context)]
        mu_z, sigma_z = loc_scale(outputs[..., : 2 * d])
        if self.flow is None:
            log_qz = gaussian_log_density((z[:, None] - mu_z) / sigma_z, sigma_z)
        else:
            start = self.flow.inverse(z[:, None].expand_as(mu_z), outputs[..., 2 * d :])
            log_qz = gaussian_log_density((start - mu_z) / sigma_z, sigma_z) - self.flow(start, outputs[..., 2 * d :])[1]
        return gaussian_log_density_pairs(a, mu_a, sigma_a) + log_qz

    def _aux_prior(self, flat: torch.Tensor | None, y: torch.Tensor | None, z: torch.Tensor,
                   head: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of p(a | x, y, z) for flat images [..., pixels], y and z [..., |z|] (broadcast), or
        from `head`, x's and y's share of its first layer where `posterior` made it: [..., |a|] each."""
        head = self.aux_decoder.head(flat, y) if head is None else head
        return loc_scale(self.aux_decoder.finish(head, z))

    def _pixels(self, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor | None) -> Distribution:
        """p(x | y, z) at the draw (z [..., |z|], y; a, [..., |a|], is not read by the ADGM's decoder)."""
        return self.decoder(z, y)

    def _z(self, outputs: torch.Tensor, noise: torch.Tensor, closed_form: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z | a, y, x) - log p(z)) from q(z | a, y, x)'s network outputs [..., 2|z| (+ context)]
        and noise [..., |z|]: z = μ + σ ε (then the IAF's steps); the KL in closed form given a where
        asked and there is one (a Gaussian q, p(z) = N(0, I)), else at the draw."""
        d = self.latent_dim
        mu_z, sigma_z = loc_scale(outputs[..., : 2 * d])
        z = mu_z + sigma_z * noise
        if closed_form and self.flow is None and self.prior_flow is None:
            return z, gaussian_kl(mu_z, sigma_z, torch.zeros_like(mu_z), torch.ones_like(sigma_z))
        log_q = gaussian_log_density(noise, sigma_z)
        if self.flow is not None:
            z, log_det = self.flow(z, outputs[..., 2 * d :])
            log_q = log_q - log_det
        return z, log_q - self._log_prior(z)

    def _log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): N(0, I) or the RealNVP's, [...]."""
        return standard_log_density(z) if self.prior_flow is None else self.prior_flow.log_prob(z)

    def classifier(self, x: torch.Tensor) -> Categorical:
        """q(y | x) = E_q(a|x)[q(y | a, x)] for x [*batch, C, H, W], the mean over CLASSIFIER_DRAWS draws
        of a, as the authors classify: batch shape [*batch], num_classes categories.

        The draws' noise is fixed (drawn once with seed 0 when the model is built, the same for every
        image and every call): the classifier is a deterministic function of x, and a run's accuracy
        repeats. The image's share of the first layer is computed once for all the draws."""
        flat = x.flatten(-3)
        mu_a, sigma_a = self._aux(flat)
        head = self.classifier_net.head(flat)
        probs = 0
        for noise in self.classifier_noise.split(CLASSIFIER_CHUNK):
            a = mu_a + sigma_a * noise.view(noise.shape[0], *([1] * (flat.dim() - 1)), self.aux_dim)
            probs = probs + torch.softmax(self.classifier_net.finish(head, a), dim=-1).sum(0)
        return Categorical(probs=probs / CLASSIFIER_DRAWS, validate_args=False)

    def objective(self, x: torch.Tensor, y: torch.Tensor | None, noise: Noise, bound: Bound,
                  kl_weight: torch.Tensor | float = 1.0, seen: torch.Tensor | None = None) -> Terms:
        """The ELBO on log p(x, y) for the last y.shape[0] images of x, whose labels y are seen, plus
        alpha log q(y | x) in what is maximised; the ELBO on log p(x) for the others, y summed out
        over the classes for each draw of a: [batch] each, the unlabelled images' first.

        The parts are recon, kl (of z), kl_a and label_kl, with bound = recon - kl - kl_a - label_kl:
        where y is seen label_kl = -log π_y, where not E_q(a|x)[KL(q(y | a, x) ‖ π)]. The networks
        that read an image (q's and p(a | x, y, z)'s) read `seen` where given (`interface.read`)."""
        def labelled(x_l, seen_l, y, noise_l):
            terms, log_pi = bound(self, x_l, y, noise_l, kl_weight, seen=seen_l), self.class_log_prior()[y]
            flat = seen_l.flatten(-3)
            mu_a, sigma_a = self._aux(flat)
            a = mu_a + sigma_a * noise_l[..., : self.aux_dim]  # the draws the bound took
            log_q = torch.log_softmax(self.classifier_net(flat, a), dim=-1).gather(-1, y.expand(a.shape[0], -1)[..., None])
            log_q_mean = torch.logsumexp(log_q[..., 0], dim=0) - math.log(a.shape[0])  # log mean_s q(y | a_s, x)
            return with_label(terms, log_pi, log_q_mean, self.alpha)

        return labelled_and_unlabelled(
            x, y, noise, read(x, seen), lambda x_u, seen_u, noise_u: self._unlabelled(x_u, seen_u, noise_u, kl_weight),
            labelled)

    def _unlabelled(self, x: torch.Tensor, seen: torch.Tensor, noise: torch.Tensor,
                    kl_weight: torch.Tensor | float) -> Terms:
        """The ELBO on log p(x) for images x [batch, C, H, W] without labels, the networks reading
        `seen` (x's shape), noise [samples, batch, |a| + classes |z|]: E_q(a|x)[Σ_y q(y | a, x)
        (log p(x, y, z, a) - log q(z | a, y, x)) + H(q(y | a, x))] - E[log q(a | x)], the sum over y
        exact, one a per draw for every class: Terms [batch]."""
        classes = self.num_classes
        flat = seen.flatten(-3)
        noise_a = noise[..., : self.aux_dim]  # [S, batch, |a|]
        noise_z = noise[..., self.aux_dim :].unflatten(-1, (classes, self.latent_dim)).movedim(-2, 1)  # [S, classes, batch, |z|]
        mu_a, sigma_a = self._aux(flat)
        a = mu_a + sigma_a * noise_a
        log_qa = gaussian_log_density(noise_a, sigma_a)  # [S, batch]
        log_q_y = torch.log_softmax(self.classifier_net(flat, a), dim=-1).movedim(-1, 1)  # [S, classes, batch]
        probs = log_q_y.exp()
        q_y = class_weights(probs)  # the classes' terms: negligible ones weigh 0 (as in the label term's)
        labels = torch.arange(classes, device=x.device)[:, None]  # [classes, 1]: every class for every image
        outputs = self.z_encoder.finish(self.z_encoder.head(flat, labels), a[:, None])
        z, kl_z = self._z(outputs, noise_z, closed_form=True)  # [S, classes, batch, |z|], [S, classes, batch]
        log_px = self._pixels(z, a[:, None], labels).log_prob(x)  # [S, classes, batch]
        mu_pa, sigma_pa = self._aux_prior(flat, labels, z)
        log_pa = gaussian_log_density((a[:, None] - mu_pa) / sigma_pa, sigma_pa)
        recon = (q_y * log_px).sum(1).mean(0)
        kl = (q_y * kl_z).sum(1).mean(0)
        kl_a = (log_qa - (q_y * log_pa).sum(1)).mean(0)
        label_kl = (probs * (log_q_y - self.class_log_prior()[:, None])).sum(1).mean(0)
        return Terms(maximised=recon - kl_weight * (kl + kl_a) - label_kl, bound=recon - kl - kl_a - label_kl,
                     parts={"recon": recon, "kl": kl, "kl_a": kl_a, "label_kl": label_kl})

    def code(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E_q[z | a, y, x] at a = E_q[a | x]: [*batch, |z|]."""
        mu_a, _, z_head, *_ = self.posterior(x, y)
        outputs = self.z_encoder.finish(z_head, mu_a)
        mu_z = outputs[..., : self.latent_dim]
        return mu_z if self.flow is None else self.flow(mu_z, outputs[..., 2 * self.latent_dim :])[0]

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | y, z) for z [*batch, |z|] and y: batch shape [*batch], event [C, H, W] (Bernoulli)."""
        return pixel_distribution("bernoulli", self.decoder_net(z, y), None)

    def prior(self) -> Distribution:
        """p(z): N(0, I) or the RealNVP flow, batch shape [], event [|z|]."""
        if self.prior_flow is not None:
            return self.prior_flow.distribution()
        zeros = torch.zeros(self.latent_dim, device=self._device())
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def sample_codes(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """z ~ p(z), N(0, I) or the RealNVP's: [count, |z|]."""
        with torch.no_grad():
            return rsample(self.prior(), (count,), generator)

    def simulate(self, count: int, generator: torch.Generator | None) -> Simulated:
        """`count` images from the model with the base noise of their latents (`interface.Simulated`):
        y ~ π, z ~ p(z), x ~ p(x | y, z), a ~ p(a | x, y, z), then q's draws inverted at x: ε_a from
        q(a | x), ε_z from q(z | a, y, x) (through the IAF backwards, if there is one)."""
        with torch.no_grad():
            y = torch.multinomial(self.class_log_prior().exp(), count, replacement=True, generator=generator)
            z = rsample(self.prior(), (count,), generator)
            x, a = self._simulate_x_a(z, y, generator)
            mu_a, sigma_a, z_head, *_ = self.posterior(x, y)
            outputs = self.z_encoder.finish(z_head, a)
            d = self.latent_dim
            z_0 = z if self.flow is None else self.flow.inverse(z, outputs[..., 2 * d :])
            mu_z, sigma_z = loc_scale(outputs[..., : 2 * d])
            return Simulated(x, y, torch.cat([(a - mu_a) / sigma_a, (z_0 - mu_z) / sigma_z], dim=-1))

    def _simulate_x_a(self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None):
        """(x ~ p(x | y, z), then a ~ p(a | x, y, z)) for z [count, |z|] and y [count]."""
        x = rsample(self.decoder(z, y), (), generator)
        mu_pa, sigma_pa = self._aux_prior(x.flatten(-3), y, z)
        return x, mu_pa + sigma_pa * torch.randn(mu_pa.shape, generator=generator, device=mu_pa.device,
                                                 dtype=mu_pa.dtype)

    def part_words(self) -> dict[str, str]:
        return {"recon": "reconstruction term E_q[log p(x | y, z)]",
                "kl": "KL term of z, KL(q(z | a, y, x) ‖ p(z)), " + (
                    "in closed form given a" if self.flow is None and self.prior_flow is None
                    else "a Monte-Carlo estimate at the drawn z"),
                "kl_a": "auxiliary term E_q[log q(a | x) − log p(a | x, y, z)]",
                "label_kl": "label term KL(q(y | a, x) ‖ π), or −log π_y where y is seen"}

    def equations(self) -> list[str]:
        nets = self.decoder_net.description
        return [
            f"y ~ Categorical(π),  π_j = 1/{self.num_classes};   " + (
                f"z ~ N(0, I_d),  d = {self.latent_dim}" if self.prior_flow is None else
                f"z = g_θ(u),  u ~ N(0, I_d),  d = {self.latent_dim};  g_θ: RealNVP, "
                f"{len(self.prior_flow.layers)} affine coupling layers"),
            f"x | y, z ~ Bernoulli(σ(f_θ(z, onehot(y)))),  f_θ: {nets};   a | x, y, z ~ N(μ_θ, diag σ²_θ),  "
            f"|a| = {self.aux_dim}",
            "q_φ(a | x) q_φ(y | a, x) q_φ(z | a, y, x): Gaussian, Categorical, "
            + ("Gaussian" if self.flow is None else f"a Gaussian through {self.flow.description}")
            + f";  each {self.aux_encoder.description}",
            "labelled:  log p(x, y) ≥ E_q[log p(x, y, z, a) − log q(a, z | x, y)],  trained with + α log q_φ(y | x)",
            "unlabelled:  log p(x) ≥ E_q(a|x)[Σ_y q_φ(y | a, x) (log p(x, y, z, a) − log q(z | a, y, x) − log q(y | a, x))] "
            "− E[log q(a | x)]",
            f"ŷ(x) = argmax_y (1/{CLASSIFIER_DRAWS}) Σ_s q_φ(y | a_s, x),  a_s ~ q_φ(a | x);  or argmax_y π_y p_θ(x | y)",
        ]
