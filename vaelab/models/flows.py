"""Normalising flows over a code z: the inverse autoregressive flow (a posterior) and RealNVP (a prior).

    InverseAutoregressiveFlow   `--posterior iaf`: T steps of Kingma et al. (2016) on a Gaussian draw,
                                each a MADE (Germain et al. 2015) fed the encoder's context h(x)
    RealNVP                     `--prior flow`: affine coupling layers (Dinh et al. 2017) from N(0, I)

Both run the direction their use needs in one pass and give its log-determinant in that pass:
the IAF maps base noise to z (a draw and its log q), RealNVP maps a z to its base point (log p(z))
or a base point to z (a draw), both exactly. Only the IAF's inverse, which bidirectional Monte
Carlo alone asks for, takes d passes per step. Shapes: z [..., d],
any leading dimensions (samples, classes, images); log-determinants [...], nats.

Written here rather than taken from a flow library (zuko, nflows, normflows; torch.distributions has
no autoregressive network): each step is a few dense layers with fixed masks, which torch.compile
traces whole, whose randomness is only the caller's base noise (vaelab's named streams), and whose
state is its parameters (a checkpoint's tensors, hence exact resume); docs/dependencies.md says more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from .layers import Dense
from .priors import standard_log_density

GATE_BIAS = 2.0  # an IAF step's gate starts at sigmoid(2) = 0.88: near the identity (Kingma et al. 2016, sec. 4)
COUPLING_SCALE_INIT = 0.0  # RealNVP's log-scales start at 0, so a new prior is N(0, I)


class MaskedLinear(Dense):
    """A dense layer whose weight is multiplied by a fixed 0/1 mask [out, in] (a MADE layer)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()), persistent=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.matmul(inputs, (self.weight * self.mask).t()) + self.bias


def made_masks(dim: int, hidden: int, layers: int, reverse: bool) -> list[torch.Tensor]:
    """The masks of a MADE on `dim` inputs with `layers` hidden layers of `hidden` units and 2 `dim`
    outputs (two numbers per input): [out, in] each, layers + 1 of them.

    Input i (1-based, or dim + 1 - i with `reverse`) has degree i; hidden unit k has degree
    1 + (k mod max(dim - 1, 1)); a unit sees the units below it of degree at most its own, and the
    outputs of input j see only hidden degrees below j: output j depends on inputs before j alone.
    """
    inputs = torch.arange(1, dim + 1)
    if reverse:
        inputs = inputs.flip(0)
    hidden_degrees = 1 + torch.arange(hidden) % max(dim - 1, 1)
    masks, below = [], inputs
    for _ in range(layers):
        masks.append((hidden_degrees[:, None] >= below[None, :]).float())
        below = hidden_degrees
    outputs = torch.cat([inputs, inputs])
    masks.append((outputs[:, None] > below[None, :]).float())
    return masks


class IAFStep(nn.Module):
    """One step of the inverse autoregressive flow: [m, s] = MADE(z, h), σ = sigmoid(s),
    z' = σ ⊙ z + (1 - σ) ⊙ m, log |det ∂z'/∂z| = Σ_i log σ_i (the Jacobian is triangular).

    The MADE has two hidden ELU layers of `hidden` units; the context h [..., context] enters the
    first one through an unmasked product. `reverse` orders the coordinates backwards.
    """

    def __init__(self, dim: int, hidden: int, context: int, reverse: bool):
        super().__init__()
        masks = made_masks(dim, hidden, 2, reverse)
        degrees = torch.arange(1, dim + 1)  # the input degrees of `made_masks`: coordinate i reads those below
        self.register_buffer("degrees", degrees.flip(0) if reverse else degrees, persistent=False)
        self.first = MaskedLinear(dim, hidden, masks[0])
        self.context = Dense(context, hidden, bias=False) if context else None
        self.middle = MaskedLinear(hidden, hidden, masks[1])
        self.last = MaskedLinear(hidden, 2 * dim, masks[2])
        with torch.no_grad():  # small first outputs, and a gate near 1: a new step is close to the identity
            self.last.weight.mul_(0.1)
            self.last.bias.zero_()
            self.last.bias[dim:] = GATE_BIAS

    def forward(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z' [..., d], log |det ∂z'/∂z| [...]) for z [..., d] and the context [..., c] (broadcasting)."""
        pre = self.first(z)
        if self.context is not None:
            pre = pre + self.context(context)
        shift, gate = self.last(F.elu(self.middle(F.elu(pre)))).chunk(2, dim=-1)
        log_sigma = F.logsigmoid(gate)
        sigma = log_sigma.exp()
        return sigma * z + (1 - sigma) * shift, log_sigma.sum(-1)

    def inverse(self, z_out: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """z [..., d] with forward(z) = z_out: d passes, pass k fixing the coordinate of degree k
        (its shift and gate read only the coordinates of lower degree, fixed before it). The others
        stay 0 until their pass, so that no value computed from unfixed inputs can overflow into
        the fixed ones."""
        z = torch.zeros_like(z_out)
        for k in range(1, z_out.shape[-1] + 1):
            pre = self.first(z)
            if self.context is not None:
                pre = pre + self.context(context)
            shift, gate = self.last(F.elu(self.middle(F.elu(pre)))).chunk(2, dim=-1)
            sigma = torch.sigmoid(gate)
            z = torch.where(self.degrees <= k, (z_out - (1 - sigma) * shift) / sigma, torch.zeros_like(z))
        return z


class InverseAutoregressiveFlow(nn.Module):
    """T IAF steps (`IAFStep`), their orders alternating (forwards, backwards, ...).

    On a draw z_0 = μ + σ ε of the encoder's Gaussian, z_T = f_T ∘ ... ∘ f_1(z_0) and
    log q(z_T | x) = log q(z_0 | x) - Σ_t log |det ∂f_t/∂z_(t-1)|, from the same pass.
    """

    def __init__(self, dim: int, steps: int, hidden: int, context: int):
        super().__init__()
        self.steps = nn.ModuleList(IAFStep(dim, hidden, context, reverse=bool(t % 2)) for t in range(steps))
        self.description = f"{steps} IAF steps, each a MADE {hidden}-{hidden} ELU with a context of {context}"

    def forward(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_T [..., d], Σ_t log |det ∂f_t/∂z_(t-1)| [...]) for z_0 = z [..., d]."""
        total = z.new_zeros(z.shape[:-1])
        for step in self.steps:
            z, log_det = step(z, context)
            total = total + log_det
        return z, total

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """z_0 [..., d] for z_T = z: every step inverted, last first (d passes each, `IAFStep.inverse`).
        Bidirectional Monte Carlo needs it, to start a reverse chain at a simulated z, and I(x; z), to
        score one image's z under another image's posterior (`inference.latents`)."""
        for step in reversed(self.steps):
            z = step.inverse(z, context)
        return z


class Coupling(nn.Module):
    """One affine coupling layer of RealNVP on z [..., d], the coordinates where `mask` is 1 held:

        z = m ⊙ u + (1 - m) ⊙ (u ⊙ exp(s(m ⊙ u)) + t(m ⊙ u))          (generate: base u -> z)
        u = m ⊙ z + (1 - m) ⊙ (z - t(m ⊙ z)) ⊙ exp(-s(m ⊙ z))          (normalise: z -> u)

    with log |det ∂z/∂u| = Σ_i (1 - m_i) s_i; s = a learned scale times tanh, t linear; the
    conditioner is an MLP with two hidden ReLU layers. Its last layer starts at zero: the identity.
    """

    def __init__(self, dim: int, hidden: int, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.get_default_dtype()), persistent=False)
        self.net = nn.Sequential(Dense(dim, hidden), nn.ReLU(), Dense(hidden, hidden), nn.ReLU(), Dense(hidden, 2 * dim))
        self.scale = nn.Parameter(torch.full((dim,), 1.0))
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.fill_(COUPLING_SCALE_INIT)

    def _shift_log_scale(self, held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_log_scale, shift = self.net(held).chunk(2, dim=-1)
        free = 1 - self.mask
        return shift * free, self.scale * torch.tanh(raw_log_scale) * free

    def generate(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log |det ∂z/∂u| [...]) for base points u [..., d]."""
        shift, log_scale = self._shift_log_scale(u * self.mask)
        return u * log_scale.exp() + shift, log_scale.sum(-1)

    def normalise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, log |det ∂u/∂z| [...]) for codes z [..., d]."""
        shift, log_scale = self._shift_log_scale(z * self.mask)
        return (z - shift) * (-log_scale).exp(), -log_scale.sum(-1)


class RealNVP(nn.Module):
    """p(z) = N(u; 0, I) |det ∂u/∂z|, u = g(z) through `layers` coupling layers that hold the
    even and the odd coordinates in turn (d >= 2). Global, learned; it never sees x or y."""

    def __init__(self, dim: int, layers: int, hidden: int):
        super().__init__()
        if dim < 2:
            raise ValueError("the flow prior couples half the code with the other half: it needs a latent size "
                             "of at least 2")
        even = (torch.arange(dim) % 2 == 0).float()
        self.layers = nn.ModuleList(Coupling(dim, hidden, even if k % 2 == 0 else 1 - even) for k in range(layers))
        self.dim, self.hidden = dim, hidden

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): z [..., d] -> [...], nats."""
        total = z.new_zeros(z.shape[:-1])
        for layer in reversed(self.layers):
            z, log_det = layer.normalise(z)
            total = total + log_det
        return total + standard_log_density(z)

    def generate(self, u: torch.Tensor) -> torch.Tensor:
        """z for base points u [..., d] ~ N(0, I)."""
        for layer in self.layers:
            u, _ = layer.generate(u)
        return u

    def distribution(self) -> "FlowPrior":
        return FlowPrior(self)


class FlowPrior(Distribution):
    """A `RealNVP` as p(z) for the estimators and pictures: batch shape [], event [d].

    `log_prob` normalises z (one pass), `draw` generates from base noise drawn with an explicit
    generator (one pass). No closed-form KL to a Gaussian q: the ELBO estimates it at the draw.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False
    monte_carlo_kl = True

    def __init__(self, flow: RealNVP):
        self.flow = flow
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([flow.dim]), validate_args=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow.log_prob(z)

    def draw(self, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """sample_shape + [d] draws: u ~ N(0, I) with `generator`, then the coupling layers."""
        weight = self.flow.layers[0].scale
        u = torch.randn((*sample_shape, self.flow.dim), generator=generator, device=weight.device, dtype=weight.dtype)
        return self.flow.generate(u)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.draw(tuple(sample_shape), None)

    @property
    def description(self) -> str:
        return (f"RealNVP flow prior: N(0, I) through {len(self.flow.layers)} affine coupling layers "
                f"(MLP {self.flow.hidden}-{self.flow.hidden} ReLU each)")
