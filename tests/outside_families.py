"""Two model families written outside vaelab, on nothing but its public interface (`vaelab.models`):

    PlanarFlowVAE   q(z_K | x): K planar-flow steps (Rezende & Mohamed 2015) on a diagonal Gaussian
    TwoLayerVAE     two stochastic layers, p(x | z1) p(z1 | z2) p(z2) and q(z1 | x) q(z2 | z1)

Importing this module registers nothing (`tests/test_new_family.py` registers them in a fixture
and removes them afterwards); `tests/register_outside_families.py` registers them when imported,
for a vaelab command run in a process of its own (`python -m tests.signal_at_step --import ...`).

Neither uses vaelab's networks, priors or likelihoods: each is a `vaelab.models.Family` (for the
default objective) with its own torch layers, its own Gaussian densities and a Bernoulli decoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent

from vaelab.models import DataFacts, Densities, Family

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)
MIN_SCALE = 1e-3  # every Gaussian's standard deviation stays above this


def normal_log_density(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(value; loc, diag scale^2) summed over the last dimension."""
    return -(0.5 * ((value - loc) / scale).pow(2) + scale.log() + HALF_LOG_TWO_PI).sum(-1)


def noise_log_density(noise: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(loc + scale * noise; loc, diag scale^2) from the draw's own noise, summed over the last dimension."""
    return -(0.5 * noise.pow(2) + scale.log() + HALF_LOG_TWO_PI).sum(-1)


def standard_log_density(value: torch.Tensor) -> torch.Tensor:
    """log N(value; 0, I) summed over the last dimension."""
    return -(0.5 * value.pow(2) + HALF_LOG_TWO_PI).sum(-1)


class GaussianLayer(nn.Module):
    """inputs [..., n] -> (loc, scale) [..., d] each: one hidden tanh layer (or none: a linear map)."""

    def __init__(self, inputs: int, hidden: int | None, outputs: int):
        super().__init__()
        self.net = nn.Linear(inputs, 2 * outputs) if not hidden else nn.Sequential(
            nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, 2 * outputs))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.net(inputs).chunk(2, dim=-1)
        return loc, F.softplus(raw) + MIN_SCALE


class BernoulliDecoder(nn.Module):
    """codes [..., d] -> p(x | code), Bernoulli pixels: batch shape [...], event (C, H, W)."""

    def __init__(self, code_dim: int, hidden: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(nn.Linear(code_dim, hidden), nn.Tanh(), nn.Linear(hidden, math.prod(image_shape)))

    def forward(self, code: torch.Tensor) -> Independent:
        logits = self.net(code).unflatten(-1, self.image_shape)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)


class PlanarFlowVAE(Family):
    """z_0 ~ q_0(z_0 | x) = N(μ(x), diag σ²(x)), z_K = f_K ∘ ... ∘ f_1(z_0),
    f_k(z) = z + û_k tanh(w_kᵀ z + b_k); z_K ~ N(0, I) under the model, x | z_K ~ Bernoulli(σ(g(z_K))).

    The flow's parameters are global (learned, not amortised). û_k = u_k + (m(w_kᵀ u_k) - w_kᵀ u_k) w_k / |w_k|²,
    m(a) = -1 + softplus(a), so that w_kᵀ û_k > -1 and every f_k is invertible (Rezende & Mohamed 2015,
    appendix A). log q_K(z_K | x) = log q_0(z_0 | x) - Σ_k log |1 + û_kᵀ ψ_k(z_{k-1})|, accumulated in the
    one forward pass from the base noise: nothing is ever inverted.
    """

    settings = ("latent_dim",)
    HIDDEN = 128  # the encoder's and the decoder's hidden width
    FLOW_STEPS = 4

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 8, flow_steps: int = FLOW_STEPS,
                 hidden: int | None = HIDDEN):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim, self.flow_steps = latent_dim, flow_steps
        self.encoder_net = GaussianLayer(math.prod(image_shape), hidden, latent_dim)
        self.decoder_net = BernoulliDecoder(latent_dim, hidden or self.HIDDEN, image_shape)
        self.flow_u = nn.Parameter(0.1 * torch.randn(flow_steps, latent_dim))
        self.flow_w = nn.Parameter(0.1 * torch.randn(flow_steps, latent_dim))
        self.flow_b = nn.Parameter(torch.zeros(flow_steps))

    @classmethod
    def for_data(cls, data: DataFacts, **settings) -> "PlanarFlowVAE":
        return cls(data.image_shape, **settings)

    @property
    def code_dim(self) -> int:
        return self.latent_dim

    def noise_shape(self, labelled: bool = True) -> tuple[int, ...]:
        return (self.latent_dim,)

    def posterior(self, x, y=None):
        """(μ, σ) of the base Gaussian q_0(z_0 | x): [*batch, d] each."""
        return self.encoder_net(x.flatten(-3))

    def u_hat(self) -> torch.Tensor:
        """û_k [K, d], with w_kᵀ û_k = -1 + softplus(w_kᵀ u_k) > -1."""
        w, u = self.flow_w, self.flow_u
        wu = (w * u).sum(-1, keepdim=True)
        return u + (F.softplus(wu) - 1 - wu) * w / w.pow(2).sum(-1, keepdim=True)

    def flow(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_K [..., d], Σ_k log |det ∂f_k / ∂z_{k-1}| [...]) for z_0 = z [..., d], in one pass."""
        log_det = z.new_zeros(z.shape[:-1])
        for u, w, b in zip(self.u_hat(), self.flow_w, self.flow_b):
            activation = torch.tanh(z @ w + b)  # [...]
            # ψ = (1 - tanh²) w, so 1 + ûᵀ ψ = 1 + (1 - tanh²) wᵀ û > 0
            log_det = log_det + torch.log((1 + (1 - activation.pow(2)) * (w @ u)).abs())
            z = z + activation[..., None] * u
        return z, log_det

    def densities(self, x, y, posterior, noise, closed_form: bool = False) -> Densities:
        """z_0 = μ + σ ε, z_K = flow(z_0): log p(x | z_K) and {"kl": log q_K(z_K | x) - log p(z_K)},
        [samples, *batch] each.

        There is no closed form for a flow's KL: closed_form asks for nothing else."""
        loc, scale = posterior
        z, log_det = self.flow(loc + scale * noise)
        log_q = noise_log_density(noise, scale) - log_det
        return Densities(self.decoder(z).log_prob(x), {"kl": log_q - standard_log_density(z)})

    def code(self, x, y=None):
        """The flow applied to the base Gaussian's mean: [*batch, d]."""
        return self.flow(self.posterior(x)[0])[0]

    def decoder(self, code, y=None):
        return self.decoder_net(code)

    def sample_codes(self, count, generator):
        device = self.flow_u.device
        return torch.randn((count, self.latent_dim), generator=generator, device=device)

    def part_words(self) -> dict[str, str]:
        return {"recon": "reconstruction term E_q[log p(x | z_K)]",
                "kl": f"KL term log q_K(z_K | x) − log p(z_K) at the drawn z_K ({self.flow_steps} planar-flow steps)"}

    def equations(self) -> list[str]:
        return [f"z_K ~ N(0, I_d),  d = {self.latent_dim}",
                "x | z_K ~ Bernoulli(σ(g_θ(z_K))),  g_θ: one hidden tanh layer",
                "q_φ(z_0 | x) = N(μ_φ(x), diag σ²_φ(x)),  z_K = f_K ∘ … ∘ f_1(z_0),  "
                "f_k(z) = z + û_k tanh(w_kᵀ z + b_k)",
                "log q_K(z_K | x) = log q_0(z_0 | x) − Σ_k log |1 + û_kᵀ ψ_k(z_(k−1))|,  "
                f"K = {self.flow_steps} planar-flow steps",
                "ELBO(x) = E_q[log p_θ(x | z_K) + log p(z_K) − log q_K(z_K | x)] ≤ log p_θ(x)"]


class TwoLayerVAE(Family):
    """p(z2) = N(0, I), p(z1 | z2) = N(μ_θ(z2), diag σ²_θ(z2)), p(x | z1) Bernoulli;
    q(z1 | x) = N(μ_φ(x), diag σ²_φ(x)), q(z2 | z1) = N(μ_φ(z1), diag σ²_φ(z1)).

    d1 = latent_dim, d2 = latent_dim // 2 (at least 1); the base noise of a draw is (ε1, ε2), d1 + d2
    numbers: z1 = μ(x) + σ(x) ε1, then z2 from z1 and ε2. The bound's parts are kl_z1 = log q(z1 | x) -
    log p(z1 | z2) and kl_z2 = log q(z2 | z1) - log p(z2), both at the draw. The code of an image is
    the mean of q(z1 | x), decoded by p(x | z1).
    """

    settings = ("latent_dim", "hidden")

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 8, hidden: tuple[int, ...] = (128,)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.d1, self.d2 = latent_dim, max(1, latent_dim // 2)
        width = hidden[0]
        self.q_z1 = GaussianLayer(math.prod(image_shape), width, self.d1)
        self.q_z2 = GaussianLayer(self.d1, width // 2, self.d2)
        self.p_z1 = GaussianLayer(self.d2, width // 2, self.d1)
        self.p_x = BernoulliDecoder(self.d1, width, image_shape)

    @classmethod
    def for_data(cls, data: DataFacts, **settings) -> "TwoLayerVAE":
        return cls(data.image_shape, **settings)

    @property
    def code_dim(self) -> int:
        return self.d1

    def noise_shape(self, labelled: bool = True) -> tuple[int, ...]:
        return (self.d1 + self.d2,)

    def posterior(self, x, y=None):
        """(μ, σ) of q(z1 | x): [*batch, d1] each (q(z2 | z1) needs the drawn z1: `densities`)."""
        return self.q_z1(x.flatten(-3))

    def densities(self, x, y, posterior, noise, closed_form: bool = False) -> Densities:
        loc1, scale1 = posterior
        eps1, eps2 = noise[..., : self.d1], noise[..., self.d1 :]
        z1 = loc1 + scale1 * eps1
        loc2, scale2 = self.q_z2(z1)
        z2 = loc2 + scale2 * eps2
        prior_loc, prior_scale = self.p_z1(z2)
        kl_z1 = noise_log_density(eps1, scale1) - normal_log_density(z1, prior_loc, prior_scale)
        kl_z2 = noise_log_density(eps2, scale2) - standard_log_density(z2)
        return Densities(self.p_x(z1).log_prob(x), {"kl_z1": kl_z1, "kl_z2": kl_z2})

    def code(self, x, y=None):
        return self.posterior(x)[0]

    def decoder(self, code, y=None):
        return self.p_x(code)

    def sample_codes(self, count, generator):
        """z2 ~ N(0, I), then z1 ~ p(z1 | z2), both with `generator`: [count, d1]."""
        device = next(self.parameters()).device
        with torch.no_grad():
            z2 = torch.randn((count, self.d2), generator=generator, device=device)
            loc, scale = self.p_z1(z2)
            return loc + scale * torch.randn((count, self.d1), generator=generator, device=device)

    def part_words(self) -> dict[str, str]:
        return {"recon": "reconstruction term E_q[log p(x | z1)]",
                "kl_z1": "KL term of the first layer, log q(z1 | x) − log p(z1 | z2) at the drawn z1, z2",
                "kl_z2": "KL term of the top layer, log q(z2 | z1) − log p(z2) at the drawn z1, z2"}

    def equations(self) -> list[str]:
        return [f"z2 ~ N(0, I),  d2 = {self.d2};   z1 | z2 ~ N(μ_θ(z2), diag σ²_θ(z2)),  d1 = {self.d1}",
                "x | z1 ~ Bernoulli(σ(g_θ(z1))),  two stochastic layers",
                "q_φ(z1 | x) = N(μ_φ(x), diag σ²_φ(x)),  q_φ(z2 | z1) = N(μ_φ(z1), diag σ²_φ(z1))",
                "ELBO(x) = E_q[log p(x | z1)] − E_q[log q(z1 | x) − log p(z1 | z2)] "
                "− E_q[log q(z2 | z1) − log p(z2)]"]


# --model name -> family
OUTSIDE_FAMILIES = {"planar-flow": PlanarFlowVAE, "two-layer": TwoLayerVAE}
