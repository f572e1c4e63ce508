"""The latents of the Gaussian families (VAE, CVAE, M2): one Gaussian layer, perhaps with an IAF on
it, or a hierarchy of Gaussian layers z_1, ..., z_L with bottom-up or top-down inference
(`hierarchy.py`); here the one layer and the Gaussian pieces both build on.

Both sit between the encoder network (whose outputs they read), the decoder network (which reads
z_1) and the prior of their top layer (`priors.py`, `flows.RealNVP`): the family asks them for

    encoder_outputs            how many numbers per image the encoder network must give
    posterior(outputs)         the amortised pass: a tuple of [*batch, ...] tensors, once per batch
    draw(posterior, noise, top_prior, closed_form)
                               z_1 [samples, *batch, d_1] and every layer's log q - log p, in one pass
    code(posterior)            z_1 with every noise at 0 (the pictures' code)
    top_gaussian(posterior)    a Gaussian over the top layer, for the VampPrior's components
    generate(z_top, generator) z_1 from a draw of the top layer, down through p(z_l | z_(l+1))
    simulate(top_prior, n, g)  every layer drawn from the prior, z_1 first
    noise_of(posterior, latents) the base noise whose draw gives those latents (the draw inverted)
    shown(posterior, noise, top_prior)   every layer at the draw, for the diagnostics (`interface.Latent`)
    log_q_pairs(posterior, values)       log q(latents = values_i | x_j) for every pair i, j

The hierarchy (Burda et al. 2015, bottom-up; Sønderby et al. 2016, top-down):

    p(z_L) p(z_(L-1) | z_L) ... p(z_1 | z_2) p(x | z_1[, y])
    bottom-up:  q(z_1 | x[, y]) q(z_2 | z_1) ... q(z_L | z_(L-1))
    top-down:   q(z_L | x[, y]) q(z_(L-1) | z_L, x[, y]) ... q(z_1 | z_2, x[, y]), each q(z_l | z_(l+1), x)
                the precision-weighted mean of the bottom-up pass's Gaussian N(μ̂_l, σ̂_l²) and the
                generative p(z_l | z_(l+1)), sharing the generative network with p

Every conditional Gaussian between layers is an MLP with two hidden layers as wide as the lower of
the two latents it joins (Burda et al.'s 100-100 between z_1 = 100 and z_2 = 50), σ = softplus + 10^-3.
The label y enters only through the encoder and decoder networks: the latents' prior stays p(z)
apart from y, as for the VampPrior (see priors.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from .flows import InverseAutoregressiveFlow
from .interface import Latent
from .layers import ACTIVATIONS, Dense
from .priors import (analytic_kl, gaussian_kl, gaussian_kl_units, gaussian_log_density, gaussian_log_density_pairs,
                     rsample)

MIN_SCALE = 1e-3  # the hierarchy's conditional Gaussians keep σ above this


def loc_scale(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) from an encoder's [..., 2d] outputs read as (μ, log σ²), as every one-layer family does."""
    mu, log_var = outputs.chunk(2, dim=-1)
    return mu, torch.exp(0.5 * log_var)


def softplus_loc_scale(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) from [..., 2d] outputs read as (μ, softplus⁻¹ σ), σ >= MIN_SCALE."""
    mu, raw = outputs.chunk(2, dim=-1)
    return mu, F.softplus(raw) + MIN_SCALE


def merge(hat_loc: torch.Tensor, hat_scale: torch.Tensor, p_loc: torch.Tensor,
          p_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-down posterior's (μ_q, σ_q): the precision-weighted mean of N(μ̂, σ̂²) and N(μ_p, σ_p²)."""
    hat_precision, p_precision = hat_scale.pow(-2), p_scale.pow(-2)
    variance = 1 / (hat_precision + p_precision)
    return (hat_loc * hat_precision + p_loc * p_precision) * variance, variance.sqrt()


class GaussianMLP(nn.Module):
    """inputs [..., n] -> raw [..., 2 d], read by `softplus_loc_scale`: two hidden layers of `width`."""

    def __init__(self, inputs: int, width: int, outputs: int, activation: str):
        super().__init__()
        self.net = nn.Sequential(Dense(inputs, width), ACTIVATIONS[activation](), Dense(width, width),
                                 ACTIVATIONS[activation](), Dense(width, 2 * outputs))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


class GaussianLatent(nn.Module):
    """One layer z ~ q(z | x[, y]) = N(μ, diag σ²), the encoder giving (μ, log σ²), or with
    `flow_steps` the IAF of Kingma et al. (2016) on its draw, fed a context h of `flow_hidden`
    numbers more from the encoder (`flows.InverseAutoregressiveFlow`). The bound's part is "kl"."""

    def __init__(self, dim: int, flow_steps: int = 0, flow_hidden: int = 320):
        super().__init__()
        self.dims = (dim,)
        self.context_dim = flow_hidden if flow_steps else 0
        self.flow = InverseAutoregressiveFlow(dim, flow_steps, flow_hidden, self.context_dim) if flow_steps else None

    @property
    def encoder_outputs(self) -> int:
        return 2 * self.dims[0] + self.context_dim

    @property
    def names(self) -> tuple[str, ...]:
        return ("kl",)

    def posterior(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(μ, σ) [*batch, d] each, and with an IAF its context h [*batch, flow_hidden]."""
        d = self.dims[0]
        mu, scale = loc_scale(outputs[..., : 2 * d])
        return (mu, scale) if self.flow is None else (mu, scale, outputs[..., 2 * d :])

    def draw(self, posterior: tuple[torch.Tensor, ...], noise: torch.Tensor, top_prior: Distribution,
             closed_form: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """z = μ + σ ε (then the IAF's steps): (z [samples, *batch, d], {"kl": log q(z | x) - log p(z)}),
        the KL [*batch] in closed form where asked and there is one (no flow, a Gaussian prior)."""
        loc, scale = posterior[:2]
        z = loc + scale * noise
        if closed_form and self.flow is None and analytic_kl(top_prior):
            return z, {"kl": gaussian_kl(loc, scale, top_prior.base_dist.loc, top_prior.base_dist.scale)}
        log_q = gaussian_log_density(noise, scale)
        if self.flow is not None:
            z, log_det = self.flow(z, posterior[2])
            log_q = log_q - log_det
        return z, {"kl": log_q - top_prior.log_prob(z)}

    def code(self, posterior: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """μ, through the IAF's steps if there are any (the draw at ε = 0): [*batch, d]."""
        return posterior[0] if self.flow is None else self.flow(posterior[0], posterior[2])[0]

    def top_gaussian(self, posterior: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ): the Gaussian of q (before its flow, if it has one)."""
        return posterior[0], posterior[1]

    def generate(self, top: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return top

    def simulate(self, top_prior: Distribution, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor]:
        """(z,): z [count, d] drawn from the prior with `generator`."""
        return (rsample(top_prior, (count,), generator),)

    def noise_of(self, posterior: tuple[torch.Tensor, ...], latents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The base noise ε [*batch, d] whose `draw` is latents = (z,): the draw inverted (through the
        IAF's steps backwards, if there are any)."""
        (z,) = latents
        if self.flow is not None:
            z = self.flow.inverse(z, posterior[2])
        return (z - posterior[0]) / posterior[1]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return ("z",)

    @property
    def information_images(self) -> int | None:
        """All test images for one Gaussian (a pair is one density); 100 with an IAF (a pair is the
        flow inverted, d MADE passes a step)."""
        return None if self.flow is None else 100

    def shown(self, posterior: tuple[torch.Tensor, ...], noise: torch.Tensor,
              top_prior: Distribution) -> dict[str, Latent]:
        """{"z": z at the draws of noise [samples, *batch, d]}, with its mean μ and every unit's KL
        against N(0, I) where q is one Gaussian (no IAF) and the prior is N(0, I)."""
        loc, scale = posterior[:2]
        z = loc + scale * noise
        if self.flow is not None:
            return {"z": Latent(self.flow(z, posterior[2])[0], None, None, "kl")}
        units = None
        if analytic_kl(top_prior):
            units = gaussian_kl_units(loc, scale, top_prior.base_dist.loc, top_prior.base_dist.scale).expand(z.shape)
        return {"z": Latent(z, loc, units, "kl")}

    def log_q_pairs(self, posterior: tuple[torch.Tensor, ...], values: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """log q(z_i | x_j) for values (z [n, d],) and the pass over m images: [n, m] (with an IAF,
        every z_i taken back through the flow of every x_j)."""
        (z,) = values
        loc, scale = posterior[:2]
        if self.flow is None:
            return gaussian_log_density_pairs(z, loc, scale)
        context = posterior[2][None]
        start = self.flow.inverse(z[:, None], context)  # [n, m, d]
        return gaussian_log_density((start - loc) / scale, scale) - self.flow(start, context)[1]

    def part_words(self, given: str, top_prior: Distribution) -> dict[str, str]:
        """The KL part in words: closed form or at the draw."""
        closed = self.flow is None and analytic_kl(top_prior)
        how = "in closed form" if closed else "a Monte-Carlo estimate at the drawn z"
        return {"kl": f"KL term KL(q(z | {given}) ‖ p(z)), {how}"}

    def posterior_equation(self, inputs: str, network: str) -> str:
        gaussian = f"N(μ_φ({inputs}), diag σ²_φ({inputs}))"
        if self.flow is None:
            return f"q_φ(z | {inputs}) = {gaussian},  {network}"
        return (f"q_φ(z | {inputs}): z_0 ~ {gaussian},  z = z_T,  z_t = σ_t ⊙ z_(t−1) + (1 − σ_t) ⊙ m_t,  "
                f"[m_t, σ_t] = MADE_t(z_(t−1), h_φ({inputs}));  {network}, {self.flow.description}")

    def prior_equation(self) -> str:
        return ""
