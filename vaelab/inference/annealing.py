"""Annealed importance sampling (Neal 2001) with Hamiltonian Monte Carlo transitions, for any model
with the members of `vaelab.models.Model`, as Wu et al. (2017) use it for decoder-based models.
Pure math: no files, no printing; randomness only from the `generator` argument.

The chains run in the space of a family's base noise ε ~ N(0, I) (`Model.noise_shape`). A family's
draw maps ε to its latents, z = T_x(ε), one-to-one, and `Model.densities` gives at z

    log w(ε) = log p(x, z) - log q(z | x)          (`inference.log_weight`)

so the bridges

    log π_β(ε) = log N(ε; 0, I) + β log w(ε),      0 = β_0 < β_1 < ... < β_T = 1

go from q(z | x) (β = 0: ε ~ N(0, I) is q's own draw) to the posterior p(z | x) carried over to ε
(β = 1: N(ε) w(ε) = p(x, T_x(ε)) |det ∂T_x/∂ε|, whose integral over ε is p(x)). A Gaussian q, an
IAF, a hierarchy of layers or an auxiliary variable all reach AIS through those two members, and
the encoder is HMC's preconditioner: where q is close to p(z | x), π_1 is close to N(0, I) in ε
and unit-mass HMC moves well in it.

    sigmoid_schedule(T)    β_0 .. β_T, the sigmoid spacing of Grosse et al. (2015) and Wu et al.
    tune_step_sizes(...)   HMC's step size for every transition and image, from a pilot chain
    anneal(...)            the chains themselves: log Z_end / Z_start per chain, forward or reverse
    hmc_step(...)          one HMC transition that leaves π_β invariant (used by both)
    log_likelihood_ais(...) all of it for a model and a batch of images

A forward chain started from N(0, I) gives log w_AIS with E[exp(log w_AIS)] = p(x), so its
log-mean-exp over chains is a stochastic lower bound on log p(x). A reverse chain (β from 1 to 0)
started from an exact posterior draw (`Model.simulate`) gives, negated, a stochastic upper bound:
the two sandwich log p(x) on simulated data (bidirectional Monte Carlo, Grosse et al. 2015).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..models import read

TARGET_ACCEPTANCE = 0.65  # Wu et al.'s (and Neal's) target for HMC's acceptance probability
STEP_UP, STEP_DOWN = 1.02, 0.98  # the pilot's step-size changes after each transition, towards the target
STEP_LIMITS = (1e-4, 1.0)  # step sizes stay within these (ε is N(0, I) under q: 1 is a whole sd)

# ε [chains, *batch, *noise] -> log w(ε) [chains, *batch]; differentiable in ε
LogWeightFn = Callable[[torch.Tensor], torch.Tensor]


def sigmoid_schedule(steps: int, sharpness: float = 4.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """β_0 = 0 < β_1 < ... < β_steps = 1, spaced by a sigmoid: [steps + 1].

    β_t = (s(t) - s(0)) / (s(T) - s(0)) with s(t) = sigmoid(sharpness (2 t / T - 1)): small steps
    near both ends, where the bridges change fastest (Grosse et al. 2015; Wu et al. 2017, δ = 4).
    """
    if steps < 1:
        raise ValueError("AIS needs at least one step")
    s = torch.sigmoid(sharpness * (2 * torch.arange(steps + 1, dtype=dtype) / steps - 1))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


@dataclass(frozen=True)
class AisSettings:
    """How AIS runs (`vaelab evaluate --ais STEPS --leapfrog L --chains C`): `steps` bridges on the
    sigmoid schedule, `leapfrog` leapfrog steps per HMC transition, `chains` chains per image (and
    class), the pilot's first step size `step_size` (in units of q's noise: 1 is one standard
    deviation of q)."""

    steps: int = 1000
    leapfrog: int = 10
    chains: int = 16
    step_size: float = 0.1

    def description(self) -> dict:
        return {"steps": self.steps, "leapfrog": self.leapfrog, "chains": self.chains,
                "schedule": "sigmoid, sharpness 4 (Grosse et al. 2015)", "initial_step_size": self.step_size,
                "target_acceptance": TARGET_ACCEPTANCE,
                "step_size_rule": f"one pilot chain per image and class: x{STEP_UP} after a transition accepted "
                                  f"with probability above the target, x{STEP_DOWN} below, within "
                                  f"[{STEP_LIMITS[0]}, {STEP_LIMITS[1]}]; the estimating chains reuse its sizes"}


def _sum_noise(values: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """Sum over the noise dimensions after the first `batch_dims` (chains and images)."""
    return values.flatten(batch_dims).sum(-1)


def log_weight_and_gradient(log_w_fn: LogWeightFn, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log w(ε) [chains, *batch], ∂ log w / ∂ε [same shape as ε]); nothing is kept for autograd."""
    with torch.enable_grad():
        eps = eps.detach().requires_grad_(True)
        log_w = log_w_fn(eps)
        (grad,) = torch.autograd.grad(log_w.sum(), eps)
    return log_w.detach(), grad


@dataclass
class Chains:
    """The state of a set of chains: ε [chains, *batch, *noise], log w(ε) [chains, *batch] and its
    gradient (shaped like ε)."""

    eps: torch.Tensor
    log_w: torch.Tensor
    grad: torch.Tensor


def start_chains(log_w_fn: LogWeightFn, eps: torch.Tensor) -> Chains:
    """Chains at ε [chains, *batch, *noise], with log w and its gradient there."""
    log_w, grad = log_weight_and_gradient(log_w_fn, eps)
    return Chains(eps.detach(), log_w, grad)


def hmc_step(log_w_fn: LogWeightFn, chains: Chains, beta: float, leapfrog: int, step_size: torch.Tensor,
             generator: torch.Generator | None) -> tuple[Chains, torch.Tensor]:
    """One HMC transition of every chain on π_β (unit mass, `leapfrog` leapfrog steps of size
    `step_size`, [*batch] or [chains, *batch]), accepted or not by Metropolis-Hastings, so π_β stays
    invariant: (the chains after it, the acceptance probability [chains, *batch]). A proposal whose
    energy is not finite is refused."""
    batch_dims = chains.log_w.dim()
    if step_size.dim() < batch_dims:  # [*batch]: the same size for every chain of an image
        step_size = step_size.unsqueeze(0)
    h = step_size.reshape(*step_size.shape, *[1] * (chains.eps.dim() - batch_dims))

    def log_target(eps, log_w):
        return -0.5 * _sum_noise(eps.square(), batch_dims) + beta * log_w

    def grad_target(eps, grad):
        return beta * grad - eps

    momentum = torch.randn(chains.eps.shape, generator=generator, device=chains.eps.device, dtype=chains.eps.dtype)
    start_energy = -log_target(chains.eps, chains.log_w) + 0.5 * _sum_noise(momentum.square(), batch_dims)
    eps, log_w, grad = chains.eps, chains.log_w, chains.grad
    p = momentum + 0.5 * h * grad_target(eps, grad)
    for step in range(leapfrog):
        eps = eps + h * p
        log_w, grad = log_weight_and_gradient(log_w_fn, eps)
        p = p + (0.5 if step == leapfrog - 1 else 1.0) * h * grad_target(eps, grad)
    energy = -log_target(eps, log_w) + 0.5 * _sum_noise(p.square(), batch_dims)
    log_accept = torch.where(torch.isfinite(energy), (start_energy - energy).clamp(max=0.0),
                             torch.full_like(energy, -math.inf))  # NaN or an infinite energy: refused
    accept_probability = log_accept.exp()
    uniform = torch.rand(accept_probability.shape, generator=generator, device=eps.device, dtype=eps.dtype)
    accepted = uniform < accept_probability
    keep = accepted.reshape(*accepted.shape, *[1] * (eps.dim() - batch_dims))
    moved = Chains(eps=torch.where(keep, eps, chains.eps), log_w=torch.where(accepted, log_w, chains.log_w),
                   grad=torch.where(keep, grad, chains.grad))
    return moved, accept_probability


def tune_step_sizes(log_w_fn: LogWeightFn, eps: torch.Tensor, betas, leapfrog: int, step_size: float,
                    generator: torch.Generator | None) -> torch.Tensor:
    """The step size of every transition, for each image: [T - 1, *batch], from one pilot chain per
    image, ε [1, *batch, *noise] drawn from π at betas[0], annealed along `betas`. After each of
    its transitions the pilot's step size moves towards TARGET_ACCEPTANCE (times STEP_UP when the
    acceptance probability was above it, STEP_DOWN below; within STEP_LIMITS).

    The chains that estimate then run on these step sizes, fixed in advance: a step size adapted
    from a chain's own states makes its kernel depend on its path, and the AIS weights are then no
    longer unbiased (on the linear-Gaussian model of the tests, per-chain adaptation put
    E[p_AIS / p(x)] at 1.06 ± 0.01 after 100 steps).
    """
    chains = start_chains(log_w_fn, eps)
    h = torch.full(chains.log_w.shape[1:], step_size, dtype=eps.dtype, device=eps.device)
    sizes = []
    for t in range(1, len(betas) - 1):
        sizes.append(h)
        chains, probability = hmc_step(log_w_fn, chains, float(betas[t]), leapfrog, h, generator)
        h = torch.where(probability[0] > TARGET_ACCEPTANCE, h * STEP_UP, h * STEP_DOWN).clamp(*STEP_LIMITS)
    return torch.stack(sizes) if sizes else eps.new_zeros((0, *chains.log_w.shape[1:]))


@dataclass
class Annealed:
    """What a set of annealed chains gives, [chains, *batch] each.

    log_ratio: log Z_end / Z_start estimated by each chain (forward: an estimate of log p(x) whose
    exp is unbiased; reverse: of -log p(x)); acceptance: the mean acceptance probability over the
    transitions; eps: where the chains ended."""

    log_ratio: torch.Tensor
    acceptance: torch.Tensor
    eps: torch.Tensor


def anneal(log_w_fn: LogWeightFn, eps: torch.Tensor, betas, leapfrog: int, step_sizes: torch.Tensor,
           generator: torch.Generator | None = None) -> Annealed:
    """Run AIS chains from ε [chains, *batch, *noise] along `betas` (`sigmoid_schedule`, forward, or
    reversed for a reverse chain): at each t, log_ratio += (β_t - β_(t-1)) log w(ε), then one
    `hmc_step` on π_(β_t) with step_sizes[t - 1] ([T - 1, *batch], `tune_step_sizes`). ε must be a
    draw from π at betas[0]: N(0, I) for 0 (forward), an exact posterior draw for 1 (reverse). The
    last transition (on π at β_T) would not change the weights and is not made.
    """
    if leapfrog < 1:
        raise ValueError("HMC needs at least one leapfrog step")
    chains = start_chains(log_w_fn, eps)
    # in float64: T terms of about |log w| each; float32 would lose 0.015 nats per image by 10^6 steps
    log_ratio = torch.zeros_like(chains.log_w, dtype=torch.float64)
    acceptance = torch.zeros_like(chains.log_w)
    transitions = len(betas) - 2
    for t in range(1, len(betas)):
        beta, previous = float(betas[t]), float(betas[t - 1])
        log_ratio = log_ratio + (beta - previous) * chains.log_w.double()
        if t <= transitions:
            chains, accept_probability = hmc_step(log_w_fn, chains, beta, leapfrog, step_sizes[t - 1], generator)
            acceptance = acceptance + accept_probability
    return Annealed(log_ratio=log_ratio.to(chains.log_w.dtype), acceptance=acceptance / max(transitions, 1), eps=chains.eps)


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) Σ exp(values) over `dim`, n = values.shape[dim]."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def log_mean_exp_error(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The standard error of `log_mean_exp(values)` over the n chains along `dim`, by the delta
    method: sd(w / mean w) / sqrt(n), with w = exp(values) (0 for a single chain)."""
    n = values.shape[dim]
    if n < 2:
        return torch.zeros_like(values.select(dim, 0))
    relative = (values - torch.logsumexp(values, dim=dim, keepdim=True)).exp() * n  # w / mean w
    return relative.std(dim=dim) / math.sqrt(n)


@dataclass
class AisEstimate:
    """AIS's estimate for a batch of images, [batch] each: log_likelihood (log-mean-exp over the
    chains of each image), standard_error (over the chains, `log_mean_exp_error`), acceptance (the
    mean acceptance probability of the chains); step_sizes [T - 1, batch], the tuned schedule."""

    log_likelihood: torch.Tensor
    standard_error: torch.Tensor
    acceptance: torch.Tensor
    step_sizes: torch.Tensor


@contextmanager
def frozen(model):
    """A context in which `model`'s parameters ask for no gradient: the chains differentiate only in
    ε, and autograd then skips the weights' gradients (about a third of the work)."""
    before = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in before:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in before:
            p.requires_grad_(flag)


def model_log_weights(model, x: torch.Tensor, y: torch.Tensor | None, log_weights=None,
                      seen: torch.Tensor | None = None) -> LogWeightFn:
    """ε [chains, batch, *noise_shape()] -> log w(ε) [chains, batch] for images x [batch, C, H, W]
    (and labels y), q's amortised pass made once, reading `seen` where given (`models.read`).
    `log_weights`: `inference.make_log_weights`'s function (perhaps compiled); by default the eager one."""
    from .bounds import make_log_weights

    with torch.no_grad():
        posterior = model.posterior(read(x, seen), y)
    log_weights = log_weights or make_log_weights(model)
    return lambda eps: log_weights(x, y, posterior, eps)


def log_likelihood_ais(model, x: torch.Tensor, y: torch.Tensor | None, settings: AisSettings,
                       generator: torch.Generator | None = None, log_weights=None,
                       seen: torch.Tensor | None = None) -> AisEstimate:
    """log p(x) (log p(x | y) with labels) by AIS from q(latents | x[, y]) to p(latents | x[, y]):
    `settings.chains` chains per image of `settings.steps` bridges (`sigmoid_schedule`), each
    transition an HMC move of `settings.leapfrog` leapfrog steps, whose sizes a pilot chain per
    image tunes first (`tune_step_sizes`). x [batch, C, H, W]; the chains of all images run together.
    q, where the chains start, reads `seen` where given (`models.read`): any q leaves AIS valid."""
    betas = sigmoid_schedule(settings.steps).tolist()
    shape = (x.shape[0], *model.noise_shape())
    with frozen(model):
        log_w_fn = model_log_weights(model, x, y, log_weights, seen)
        pilot = torch.randn((1, *shape), generator=generator, device=x.device, dtype=x.dtype)
        sizes = tune_step_sizes(log_w_fn, pilot, betas, settings.leapfrog, settings.step_size, generator)
        noise = torch.randn((settings.chains, *shape), generator=generator, device=x.device, dtype=x.dtype)
        result = anneal(log_w_fn, noise, betas, settings.leapfrog, sizes, generator)
    return AisEstimate(log_likelihood=log_mean_exp(result.log_ratio), standard_error=log_mean_exp_error(result.log_ratio),
                       acceptance=result.acceptance.mean(0), step_sizes=sizes)


@dataclass
class Sandwich:
    """Bidirectional Monte Carlo on simulated images, [batch] each: lower (forward AIS,
    log-mean-exp over its chains), upper (minus the reverse chains' log-mean-exp); acceptance of the
    forward and reverse chains."""

    lower: torch.Tensor
    upper: torch.Tensor
    forward_acceptance: torch.Tensor
    reverse_acceptance: torch.Tensor


def bidirectional(model, x: torch.Tensor, y: torch.Tensor | None, posterior_noise: torch.Tensor,
                  settings: AisSettings, generator: torch.Generator | None = None, log_weights=None) -> Sandwich:
    """The BDMC sandwich of log p(x[ | y]) for images x simulated from the model (`Model.simulate`)
    with posterior_noise [batch, *noise_shape()], the exact posterior draw that made each: forward
    chains from N(0, I), reverse chains (β from 1 to 0) from that draw, both on the step sizes one
    forward pilot chain tuned (used backwards by the reverse chains)."""
    betas = sigmoid_schedule(settings.steps)
    shape = (x.shape[0], *model.noise_shape())
    with frozen(model):
        log_w_fn = model_log_weights(model, x, y, log_weights)
        pilot = torch.randn((1, *shape), generator=generator, device=x.device, dtype=x.dtype)
        sizes = tune_step_sizes(log_w_fn, pilot, betas.tolist(), settings.leapfrog, settings.step_size, generator)
        start = torch.randn((settings.chains, *shape), generator=generator, device=x.device, dtype=x.dtype)
        forward = anneal(log_w_fn, start, betas.tolist(), settings.leapfrog, sizes, generator)
        exact = posterior_noise[None].expand(settings.chains, *posterior_noise.shape)
        reverse = anneal(log_w_fn, exact, betas.flip(0).tolist(), settings.leapfrog, sizes.flip(0), generator)
    return Sandwich(lower=log_mean_exp(forward.log_ratio), upper=-log_mean_exp(reverse.log_ratio),
                    forward_acceptance=forward.acceptance.mean(0), reverse_acceptance=reverse.acceptance.mean(0))
