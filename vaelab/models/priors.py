"""Priors p(z) (`--prior`): the standard Gaussian, the VampPrior of Tomczak & Welling (2018), and a
RealNVP flow (`flows.RealNVP`, Dinh et al. 2017; the flow priors of Xu et al. 2019).

The VampPrior is the mixture p(z) = (1/K) sum_k q(z | u_k) of the encoder's posteriors at K learned
pseudo-inputs u_k (`--pseudo-inputs K`), images of the data's shape. It has no closed-form KL to a
Gaussian q, so the ELBO's KL term becomes a Monte-Carlo estimate, log q(z | x) - log p(z) at the
drawn z; the importance-sampled log-likelihood keeps its definition with log p(z) of the mixture.

For a family with a class label, the pseudo-inputs are shared by all classes and each carries one
fixed label (round-robin over the classes), so the prior stays p(z), independent of y, as the
class-conditional model's generative story has it: y ~ pi and z ~ p(z) independently, and the
same z written under every class keeps its meaning (style transfer). It costs K encoder passes
per evaluation of the prior; a prior per class, p(z | y), would tie the style to the class.
With an IAF posterior, the VampPrior's components are the encoder's Gaussians before the flow (a
mixture of Gaussians, exact to evaluate), not the flow's densities at the pseudo-inputs.

The flow prior does not see y either, for the same reason: z ~ p(z) apart from the class. It has
no closed-form KL, so its KL is estimated at the draw, and it costs one pass of its coupling
layers per drawn z, whatever the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent, Normal, constraints

PRIORS = ("standard", "vamp", "flow")
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def standard_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension: [...], nats."""
    return -(0.5 * z.pow(2) + HALF_LOG_TWO_PI).sum(-1)


def gaussian_log_density(noise: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(loc + scale * noise; loc, diag scale^2) summed over the last dimension: [...], nats.

    The density of a reparameterised draw from its own noise, with no subtraction of loc:
    sum_j [-noise_j^2 / 2 - log scale_j - log(2 pi) / 2].
    """
    return -(0.5 * noise.pow(2) + scale.log() + HALF_LOG_TWO_PI).sum(-1)


def gaussian_log_density_at(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(value; loc, diag scale²) summed over the last dimension: [...], nats (`gaussian_log_density`
    of the noise that gives `value`)."""
    return gaussian_log_density((value - loc) / scale, scale)


def gaussian_kl(q_loc: torch.Tensor, q_scale: torch.Tensor, p_loc: torch.Tensor, p_scale: torch.Tensor) -> torch.Tensor:
    """KL(N(q_loc, diag q_scale^2) || N(p_loc, diag p_scale^2)) over the last dimension: [...], nats.

    sum_j [log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2], written out because torch's
    registry lookup cannot be traced by torch.compile.
    """
    return gaussian_kl_units(q_loc, q_scale, p_loc, p_scale).sum(-1)


def gaussian_kl_units(q_loc: torch.Tensor, q_scale: torch.Tensor, p_loc: torch.Tensor,
                      p_scale: torch.Tensor) -> torch.Tensor:
    """`gaussian_kl` of every coordinate, not summed: [..., d], nats."""
    variance_ratio = (q_scale / p_scale).pow(2)
    mean_term = ((q_loc - p_loc) / p_scale).pow(2)
    return 0.5 * (variance_ratio + mean_term - 1 - variance_ratio.log())


def gaussian_log_density_pairs(values: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(values_i; loc_j, diag scale_j²) for every pair: values [n, d], loc and scale [m, d]:
    [n, m], nats. Written as one matrix product over [v², v] and [σ⁻², -2μσ⁻²], not n m d differences,
    in float64: its terms, each as large as (v / σ)², cancel (σ = 0.01 and |μ| = 3 make them 10⁵)."""
    values, loc, scale = values.double(), loc.double(), scale.double()
    precision = scale.pow(-2)
    quadratic = torch.cat([values.pow(2), values], dim=-1) @ torch.cat([precision, -2 * loc * precision], dim=-1).T
    constant = (loc.pow(2) * precision).sum(-1) + 2 * scale.log().sum(-1) + 2 * HALF_LOG_TWO_PI * loc.shape[-1]
    return (-0.5 * (quadratic + constant)).float()


def rsample(distribution: Distribution, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Draw sample_shape + batch_shape + event_shape values using `generator`.

    Gaussians are reparameterised (loc + scale * eps), so gradients flow to their parameters;
    Bernoulli draws are not differentiable (used for pictures, not for training); a continuous
    Bernoulli is sampled as icdf(uniform); a distribution with a `draw(sample_shape, generator)`
    method (the VampPrior's mixture) draws itself. Anything else raises TypeError.
    """
    if hasattr(distribution, "draw"):
        return distribution.draw(tuple(sample_shape), generator)
    base = distribution
    while isinstance(base, Independent):
        base = base.base_dist
    shape = torch.Size(sample_shape) + base.batch_shape + base.event_shape
    if isinstance(base, Normal):
        eps = torch.randn(shape, generator=generator, device=base.loc.device, dtype=base.loc.dtype)
        return base.loc + base.scale * eps
    if isinstance(base, Bernoulli):
        return torch.bernoulli(base.probs.expand(shape), generator=generator)
    if isinstance(base, ContinuousBernoulli):
        uniform = torch.rand(shape, generator=generator, device=base.logits.device, dtype=base.logits.dtype)
        return base.icdf(uniform.clamp(1e-6, 1 - 1e-6))
    raise TypeError(f"vaelab cannot draw from {type(base).__name__} with an explicit generator")
PSEUDO_MEAN, PSEUDO_STD = 0.05, 0.01  # initial pixel values of the pseudo-inputs, as Tomczak & Welling's code


class GaussianMixture(Distribution):
    """(1/K) sum_k N(loc_k, diag scale_k^2): loc, scale [K, d]; batch shape [], event [d].

    log_prob expands the squares into matrix products, [..., d] x [d, K], so that many z against
    many components cost a product rather than a [..., K, d] tensor. `draw` samples with an
    explicit generator (a component uniformly, then its Gaussian).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = False
    monte_carlo_kl = True  # no closed-form KL: the ELBO estimates it at the drawn z

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        self.loc, self.scale = loc, scale
        super().__init__(batch_shape=torch.Size(), event_shape=loc.shape[-1:], validate_args=False)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; loc_k, diag scale_k^2) for every component: z [..., d] -> [..., K]."""
        precision = self.scale.pow(-2)  # [K, d]
        shifted = self.loc * precision
        constant = (-0.5 * (self.loc * shifted).sum(-1) - self.scale.log().sum(-1)
                    - 0.5 * self.loc.shape[-1] * math.log(2 * math.pi))  # [K]
        return -0.5 * (z * z) @ precision.T + z @ shifted.T + constant

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): z [..., d] -> [...], nats."""
        return torch.logsumexp(self.component_log_prob(z), dim=-1) - math.log(self.loc.shape[0])

    def draw(self, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """sample_shape + [d] draws: uniform components, then loc + scale * eps."""
        count = math.prod(sample_shape)
        components = torch.randint(self.loc.shape[0], (count,), generator=generator, device=self.loc.device)
        eps = torch.randn((count, self.loc.shape[-1]), generator=generator, device=self.loc.device,
                          dtype=self.loc.dtype)
        return (self.loc[components] + self.scale[components] * eps).view(*sample_shape, -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.draw(tuple(sample_shape), None)

    @property
    def description(self) -> str:
        return (f"VampPrior (1/K) Σ_k q(z | u_k), a mixture of the encoder's posteriors at K = {self.loc.shape[0]} "
                "learned pseudo-inputs")


def analytic_kl(prior: Distribution) -> bool:
    """Whether the ELBO's KL(q(z | x) || p(z)) to this prior is computed in closed form (True: N(0, I)
    against vaelab's diagonal-Gaussian q, `gaussian_kl`), or estimated by Monte Carlo as
    log q(z | x) - log p(z) at the drawn z (False: a prior marked `monte_carlo_kl`, the VampPrior)."""
    return not getattr(prior, "monte_carlo_kl", False)


def describe_prior(prior: Distribution) -> str:
    """The prior in words, for the report: "N(0, I)" for the standard Gaussian, else its own description."""
    if isinstance(prior, Independent) and isinstance(prior.base_dist, Normal):
        base = prior.base_dist
        if bool((base.loc == 0).all()) and bool((base.scale == 1).all()):
            return "N(0, I)"
        return "N(μ, diag σ²), a diagonal Gaussian"
    return getattr(prior, "description", type(prior).__name__)


class PseudoInputs(nn.Module):
    """K learned images u_k in [0, 1] (hardtanh of free parameters) and, with classes, their fixed labels."""

    def __init__(self, count: int, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.values = nn.Parameter(torch.empty(count, *image_shape).normal_(PSEUDO_MEAN, PSEUDO_STD))
        labels = torch.arange(count) % num_classes if num_classes else None
        self.register_buffer("labels", labels, persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(u [K, C, H, W] in [0, 1], labels [K] int64 or None)."""
        return nn.functional.hardtanh(self.values, 0.0, 1.0), self.labels
