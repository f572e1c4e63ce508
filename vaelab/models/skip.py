"""Maaløe et al. (2016)'s skip deep generative model (SDGM): the ADGM (`auxiliary.py`) with the
auxiliary latent a in the generative model, p(a | y, z) p(x | a, y, z), the model their public code trains.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from .auxiliary import ADGM
from .joined import Joined
from .latents import loc_scale
from .likelihoods import pixel_distribution
from .mlp import MLPDecoder
from .priors import rsample


class SDGM(ADGM):
    """Maaløe et al. (2016)'s skip deep generative model: the ADGM with a in the generative model,

        p(y) p(z) p(a | y, z) p(x | a, y, z)          q(a | x) q(y | a, x) q(z | a, y, x) as the ADGM's

    so the auxiliary latent is a second latent of x, not a helper of q alone: p(a | y, z) does not
    see x and cannot copy q(a | x), and the decoder reads a (the "skip" from a to x). The authors'
    public code trains this model. Its pictures decode at a = E_p[a | y, z] (`decoder`); the bound,
    IS and AIS draw a from q as the ADGM's do.
    """

    pixel_words = "Bernoulli means at a = E_p[a | y, z]"

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, latent_dim: int = 50,
                 aux_dim: int | None = None, hidden: tuple[int, ...] = (500,), activation: str = "softplus", **settings):
        super().__init__(image_shape, num_classes, latent_dim, aux_dim, hidden, activation, **settings)
        a, z, hidden = self.aux_dim, latent_dim, tuple(hidden)
        self.aux_decoder = Joined((z,), hidden, 2 * a, activation, num_classes)  # p(a | y, z)
        self.decoder_net = MLPDecoder(z + a, self.image_shape, num_classes, hidden, activation)  # p(x | a, y, z)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(μ_a, σ_a) of q(a | x) [*batch, |a|] and the image's and label's share of the first layer
        of q(z | a, y, x) [*batch, hidden[0]] (p(a | y, z) reads no image)."""
        flat = x.flatten(-3)
        mu_a, sigma_a = self._aux(flat)
        return mu_a, sigma_a, self.z_encoder.head(flat, y)

    def _aux_prior(self, flat, y, z, head=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of p(a | y, z) for y and z [..., |z|] (broadcast): [..., |a|] each; no image is read."""
        return loc_scale(self.aux_decoder(z, y=y))

    def _pixels(self, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor | None) -> Distribution:
        """p(x | a, y, z) for z [..., |z|] and a [..., |a|] (broadcast against each other) and y."""
        a = a.expand(*z.shape[:-1], a.shape[-1])
        return pixel_distribution("bernoulli", self.decoder_net(torch.cat([z, a], dim=-1), y), None)

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | a, y, z) at a = E_p[a | y, z], for z [*batch, |z|] and y: batch shape [*batch], event [C, H, W]."""
        return self._pixels(z, self._aux_prior(None, y, z)[0], y)

    def _simulate_x_a(self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None):
        """(x, a): a ~ p(a | y, z), then x ~ p(x | a, y, z), for z [count, |z|] and y [count]."""
        mu_pa, sigma_pa = self._aux_prior(None, y, z)
        a = mu_pa + sigma_pa * torch.randn(mu_pa.shape, generator=generator, device=mu_pa.device, dtype=mu_pa.dtype)
        return rsample(self._pixels(z, a, y), (), generator), a

    def part_words(self) -> dict[str, str]:
        return {**super().part_words(), "recon": "reconstruction term E_q[log p(x | a, y, z)]",
                "kl_a": "auxiliary term E_q[log q(a | x) − log p(a | y, z)]"}

    def equations(self) -> list[str]:
        lines = super().equations()
        lines[1] = (f"a | y, z ~ N(μ_θ, diag σ²_θ),  |a| = {self.aux_dim};   x | a, y, z ~ "
                    f"Bernoulli(σ(f_θ(z, a, onehot(y)))),  f_θ: {self.decoder_net.description}")
        return lines
