"""The bounds on log p(x) that training maximises and evaluation reports, for any model with the
members of `vaelab.models.Model`.

Pure math: no files, no printing. Every result is in nats per image, shape [batch] unless said.
Randomness comes only from base noise drawn with an explicit generator (`draw_noise`). A model's
latents are whatever it declares: the bounds read them through `model.posterior` and
`model.densities` alone.

    draw_noise(...)        the base noise N(0, I) of a model's latents
    log_weight(...)        log p(x | latents) + log p(latents) - log q(latents | x), from a family's Densities
    elbo(...)              E_q[log p(x | latents)] - the KL of every latent, with the named parts (SGVB)
    iw_bound(...)          log (1/k) sum_i p(x, latents_i) / q(latents_i | x)     (IWAE bound, k samples)
    BOUNDS                 --objective -> the bound a family's objective calls
    make_log_weights(...)  log w of many draws at once, compiled where asked
    fixing_prior           runs a function of a model with its prior made once (`models.prior_fixed`)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ..models import Densities, Terms, prior_fixed, read
from ..runtime.compilation import CompiledOrEager


def draw_noise(model, samples: int, batch: int | tuple[int, ...], generator: torch.Generator | None,
               device: torch.device | str, dtype: torch.dtype = torch.float32, labelled: bool = True) -> torch.Tensor:
    """Base noise N(0, I) for `samples` draws of the latents of each image: [samples, *batch, *model.noise_shape()].

    For a Gaussian q these are the very numbers drawing from it with this generator would use
    (loc + scale * eps). labelled=False: the noise of images whose label the family sums out.
    """
    batch = (batch,) if isinstance(batch, int) else tuple(batch)
    return torch.randn((samples, *batch, *model.noise_shape(labelled)), generator=generator, device=device,
                       dtype=dtype)


def fixing_prior(function: Callable) -> Callable:
    """`function(model, ...)` run within `prior_fixed(model)`: whatever it evaluates reuses one making
    of the prior (the VampPrior's pseudo-inputs encoded once, not once per batch). For a function
    during which the parameters do not change."""
    @functools.wraps(function)
    def with_fixed_prior(model, *args, **kwargs):
        with prior_fixed(model):
            return function(model, *args, **kwargs)

    return with_fixed_prior


def log_weight(densities: Densities, kl_weight: torch.Tensor | float = 1.0) -> torch.Tensor:
    """log w = log p(x | latents) + log p(latents) - log q(latents | x) at every draw: [samples, *batch].

    kl_weight weighs log p(latents) - log q(latents | x) (KL warm-up, β): the annealed log-weight
    that training with the IW bound maximises; 1 is the true one.
    """
    return densities.log_px - kl_weight * sum(densities.kl.values())


def elbo(model, x: torch.Tensor, y: torch.Tensor | None, noise: torch.Tensor,
         kl_weight: torch.Tensor | float = 1.0, seen: torch.Tensor | None = None) -> Terms:
    """SGVB estimate of the ELBO with noise.shape[0] draws per image: Terms [*batch] each.

    x: [*batch, C, H, W] (0/1 or [0, 1]); y: int64 class indices (a suffix of the batch shape) or
    None; noise: [samples, *batch, *noise_shape] (`draw_noise`). The parts are "recon",
    E_q[log p(x | latents)], and the family's KL of every latent, in closed form where it gives one;
    bound = recon - their sum. What is maximised weighs the KLs by kl_weight (warm-up, β).
    seen: what q reads instead of x (`models.read`), x's shape, or None.
    """
    densities = model.densities(x, y, model.posterior(read(x, seen), y), noise, closed_form=True)
    recon = densities.log_px.mean(0)
    kls = {name: value.mean(0) if value.dim() == densities.log_px.dim() else value
           for name, value in densities.kl.items()}
    kl = sum(kls.values())
    return Terms(maximised=recon - kl_weight * kl, bound=recon - kl, parts={"recon": recon, **kls})


def iw_bound(model, x: torch.Tensor, y: torch.Tensor | None, noise: torch.Tensor,
             kl_weight: torch.Tensor | float = 1.0, seen: torch.Tensor | None = None) -> Terms:
    """The importance-weighted bound L_k (Burda et al. 2015) with k = noise.shape[0]: Terms [*batch] each.

    Differentiable; k = 1 is the ELBO (with every KL estimated at the draw). What is maximised
    weighs log p(latents) - log q(latents | x) in every log-weight by kl_weight (KL warm-up):
    log mean_k p(x | z_k) (p(z_k) / q(z_k | x))^kl_weight. The parts are the ELBO's, estimated from
    the same draws. seen: what q reads instead of x (`models.read`), or None.
    """
    densities = model.densities(x, y, model.posterior(read(x, seen), y), noise)
    log_k = math.log(noise.shape[0])
    bound = torch.logsumexp(log_weight(densities), dim=0) - log_k
    maximised = torch.logsumexp(log_weight(densities, kl_weight), dim=0) - log_k
    parts = {"recon": densities.log_px.mean(0), **{name: value.mean(0) for name, value in densities.kl.items()}}
    return Terms(maximised=maximised, bound=bound, parts=parts)


# --objective -> the shared bound a family's objective calls
BOUNDS: dict[str, Callable[..., Terms]] = {"elbo": elbo, "iwae": iw_bound}

LogWeights = Callable[[torch.Tensor, "torch.Tensor | None", tuple, torch.Tensor], torch.Tensor]


def make_log_weights(model, compile: bool = False) -> LogWeights:
    """A function (x, y, posterior, noise) -> log w [samples, batch] (`log_weight` of the model's densities).

    With compile=True the draws, the decoder and the log-densities are compiled together by
    torch.compile (the elementwise log-probability then fuses with the last layer: about 10-30%
    more decoder evaluations per second on a CPU). If compilation fails, the first call says so on
    stderr and everything runs eagerly: same numbers, only slower.
    """

    def log_weights(x, y, posterior, noise):
        return log_weight(model.densities(x, y, posterior, noise))

    return CompiledOrEager(log_weights, "the importance weights") if compile else log_weights


