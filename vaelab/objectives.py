"""Bounds and estimators for any model that declares prior(), encoder(x, y) and decoder(z, y).

Pure math: no files, no printing. Every result is in nats per image, shape [batch] unless said.
Randomness comes only from the `generator` argument (a torch.Generator on the data's device).

    elbo(...)              E_q[log p(x|z)] - KL(q(z|x) || p(z)), with both terms  (SGVB, L samples)
    iw_bound(...)          log (1/k) sum_i p(x, z_i) / q(z_i | x)                 (IWAE bound, k samples)
    log_likelihood_is(...) the same importance-sampled estimate of log p(x), chunked so that
                           K = 1000 or more fits in memory
    log_likelihood_prefixes(...) that estimate from the first n draws for several n, from one set of draws
    log_likelihood_per_class / log_marginal_likelihood / classify: the class-conditional extras,
                           log p(x) = logsumexp_y [log p(x | y) + log pi_y] and argmax_y p(y | x)
    sum_over_labels / unlabelled_elbo: for a family with a classifier q(y | x) (M2), a bound on
                           log p(x | y) becomes one on log p(x) by summing over every class y
    confusion_matrix:      how often q(y | x) names each class for each true class
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import Bernoulli, Categorical, ContinuousBernoulli, Distribution, Independent, Normal, kl_divergence

from .fast import CompiledOrEager


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


def sample_prior(model, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`count` codes z ~ p(z) of `model`, drawn with `generator` (on the model's device): [count, d]."""
    with torch.no_grad():
        return rsample(model.prior(), (count,), generator)


def standard_noise(model, batch: int | tuple[int, ...], samples: int, generator: torch.Generator | None,
                   device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """eps ~ N(0, I) for `samples` reparameterised draws per image: [samples, *batch, d].

    The same numbers `rsample` would draw from a Gaussian q of batch shape `batch` with this
    generator, so drawing them first (outside a compiled function, say) changes nothing. batch is
    (classes, images) where every image is taken under every class (`unlabelled_elbo`).
    """
    batch = (batch,) if isinstance(batch, int) else tuple(batch)
    return torch.randn((samples, *batch, model.latent_dim), generator=generator, device=device, dtype=dtype)


def reparameterize(q: Distribution, noise: torch.Tensor) -> torch.Tensor:
    """z = loc + scale * eps for a (diagonal) Gaussian q and eps ~ N(0, I): noise.shape."""
    base = q.base_dist if isinstance(q, Independent) else q
    if not isinstance(base, Normal):
        raise TypeError(f"drawn noise reparameterises a Gaussian q, not {type(base).__name__}; pass noise=None")
    return base.loc + base.scale * noise


def _draw_z(q: Distribution, samples: int, generator: torch.Generator | None, noise: torch.Tensor | None):
    return rsample(q, (samples,), generator) if noise is None else reparameterize(q, noise)


@dataclass(frozen=True)
class ElboTerms:
    """The evidence lower bound and its two parts, each [batch] in nats per image."""

    elbo: torch.Tensor
    recon: torch.Tensor  # E_q[log p(x | z)]
    kl: torch.Tensor  # KL(q(z | x) || p(z)) (analytic where torch knows it, Monte-Carlo otherwise)
    label_kl: torch.Tensor | None = None  # KL(q(y | x) || pi), a part of kl, where the label was summed out


def _diagonal_normal(distribution: Distribution) -> Normal | None:
    """The Normal inside Independent(Normal, 1), else None."""
    if isinstance(distribution, Independent) and distribution.reinterpreted_batch_ndims == 1 and \
            isinstance(distribution.base_dist, Normal):
        return distribution.base_dist
    return None


def kl_to_prior(q: Distribution, prior: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) per image: analytic if registered with torch, else the mean of log q(z) - log p(z) over z.

    Two diagonal Gaussians (every vaelab model) take the closed form directly,
    sum_j [log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2], the formula torch's
    registry holds: the registry's lookup cannot be traced by torch.compile.
    """
    if z is not None and getattr(prior, "monte_carlo_kl", False):  # no closed form, and no registry lookup to trace
        return (q.log_prob(z) - prior.log_prob(z)).mean(0)
    q_normal, p_normal = _diagonal_normal(q), _diagonal_normal(prior)
    if q_normal is not None and p_normal is not None:
        variance_ratio = (q_normal.scale / p_normal.scale).pow(2)
        mean_term = ((q_normal.loc - p_normal.loc) / p_normal.scale).pow(2)
        return 0.5 * (variance_ratio + mean_term - 1 - variance_ratio.log()).sum(-1)
    try:
        return kl_divergence(q, prior)
    except NotImplementedError:
        if z is None:
            raise
        return (q.log_prob(z) - prior.log_prob(z)).mean(0)


def elbo(model, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 1,
         generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> ElboTerms:
    """SGVB estimate of the ELBO with `samples` reparameterised draws per image.

    x: [batch, *image_shape] (0/1 or [0, 1]); y: [batch] int64 class indices or None. `noise` (from
    `standard_noise`, [samples, batch, d]) supplies the draws instead of `generator`.
    """
    q = model.encoder(x, y)
    z = _draw_z(q, samples, generator, noise)  # [samples, batch, d]
    recon = model.decoder(z, y).log_prob(x).mean(0)
    kl = kl_to_prior(q, model.prior(), z)
    return ElboTerms(elbo=recon - kl, recon=recon, kl=kl)


def log_importance_weights(model, x: torch.Tensor, y: torch.Tensor | None, samples: int,
                           generator: torch.Generator | None, q: Distribution | None = None,
                           noise: torch.Tensor | None = None) -> torch.Tensor:
    """log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x) for z_i ~ q: [samples, batch]."""
    q = model.encoder(x, y) if q is None else q
    z = _draw_z(q, samples, generator, noise)
    return model.decoder(z, y).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)


def iw_bound(model, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 5,
             generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
             kl_weight: torch.Tensor | float | None = None):
    """The importance-weighted bound L_k (Burda et al. 2015): [batch]. Differentiable; k = 1 is the ELBO.

    With kl_weight (KL warm-up) it returns (annealed, bound), both [batch]: the annealed objective
    weighs log p(z) - log q(z | x) in every log-weight by kl_weight, from the same draws.
    """
    q = model.encoder(x, y)
    z = _draw_z(q, samples, generator, noise)
    log_px = model.decoder(z, y).log_prob(x)
    log_ratio = model.prior().log_prob(z) - q.log_prob(z)
    bound = torch.logsumexp(log_px + log_ratio, dim=0) - math.log(samples)
    if kl_weight is None:
        return bound
    return torch.logsumexp(log_px + kl_weight * log_ratio, dim=0) - math.log(samples), bound


LogWeights = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, Distribution], torch.Tensor]


def make_log_weights(model, compile: bool = False) -> LogWeights:
    """A function (x, y, z, q) -> log p(x | z, y) + log p(z) - log q(z | x, y), [samples, batch].

    With compile=True the decoder and the log-densities are compiled together by torch.compile
    (the elementwise log-probability then fuses with the last layer: about 10-30% more decoder
    evaluations per second on a CPU). If compilation fails, the first call says so on stderr and
    everything runs eagerly: same numbers, only slower.
    """

    def log_weights(x, y, z, q_loc, q_scale):
        q = Independent(Normal(q_loc, q_scale, validate_args=False), 1)
        return model.decoder(z, y).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)

    def eager(x, y, z, q):
        return model.decoder(z, y).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)

    if not compile:
        return eager
    compiled = CompiledOrEager(log_weights, "the importance weights")

    def fast(x, y, z, q):
        base = q.base_dist if isinstance(q, Independent) else None
        if isinstance(base, Normal):
            return compiled(x, y, z, base.loc, base.scale)
        return eager(x, y, z, q)

    return fast


def log_likelihood_is(model, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 1000,
                      generator: torch.Generator | None = None, chunk: int = 250,
                      log_weights: LogWeights | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) (log p(x | y) for a conditional model) with q as proposal: [batch].

    Draws `samples` z per image in chunks of `chunk`, keeping a running logsumexp, so memory is
    O(chunk * batch * pixels) whatever `samples` is. A stochastic lower bound on log p(x) whose gap
    shrinks as `samples` grows (it equals iw_bound with k = samples). `log_weights` (from
    `make_log_weights`) may supply a compiled evaluation of the weights.
    """
    return log_likelihood_prefixes(model, x, y, (samples,), generator, chunk, log_weights)[0]


def log_likelihood_prefixes(model, x: torch.Tensor, y: torch.Tensor | None, sizes: tuple[int, ...],
                            generator: torch.Generator | None = None, chunk: int = 250,
                            log_weights: LogWeights | None = None) -> list[torch.Tensor]:
    """`log_likelihood_is` from the first n of one sequence of draws, for each n in `sizes`: [batch] each.

    max(sizes) draws are decoded once; the estimate for n uses draws 1..n, so it is exactly the
    estimate `log_likelihood_is` gives with n samples and the same generator. Evaluation uses this
    to serve log p(x | y) with K samples and the per-class estimate with fewer from the same decoder
    passes.
    """
    log_weights = log_weights or make_log_weights(model)
    total = max(sizes)
    with torch.inference_mode():
        q = model.encoder(x, y)
        running: list[torch.Tensor | None] = [None] * len(sizes)
        done = 0
        while done < total:
            size = min(chunk, total - done)
            log_w = log_weights(x, y, rsample(q, (size,), generator), q)  # [size, batch]
            for i, n in enumerate(sizes):
                if n > done:
                    part = torch.logsumexp(log_w[: n - done], dim=0)
                    running[i] = part if running[i] is None else torch.logaddexp(running[i], part)
            done += size
        return [value - math.log(n) for value, n in zip(running, sizes)]


def log_likelihood_per_class(model, x: torch.Tensor, samples: int, generator: torch.Generator | None = None,
                             chunk: int = 250, log_weights: LogWeights | None = None,
                             known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """log p(x | y) for every class y, each from `samples` importance samples: [batch, num_classes].

    All (image, class) pairs are decoded together, `chunk` draws at a time for each of them.
    known = (labels [batch], estimates [batch]): one class per image whose estimate, made with
    `samples` draws, is already at hand (the true class, whose K draws evaluation decodes anyway);
    only the other classes are drawn. Every class still gets exactly `samples` draws, so the
    classifier built on these estimates favours none.
    """
    batch, classes = x.shape[0], model.num_classes
    offsets = torch.arange(0 if known is None else 1, classes, device=x.device)
    labels = offsets.expand(batch, -1) if known is None else (known[0][:, None] + offsets) % classes
    pairs = labels.shape[1]
    x_pairs = x[:, None].expand(batch, pairs, *x.shape[1:]).reshape(batch * pairs, *x.shape[1:])
    estimates = log_likelihood_is(model, x_pairs, labels.reshape(-1), samples, generator,
                                  max(1, chunk // pairs), log_weights).view(batch, pairs)
    result = torch.empty(batch, classes, dtype=estimates.dtype, device=x.device)
    result.scatter_(1, labels, estimates)
    if known is not None:
        result.scatter_(1, known[0][:, None], known[1][:, None].to(estimates.dtype))
    return result


def log_marginal_likelihood(log_px_given_y: torch.Tensor, class_log_prior: torch.Tensor) -> torch.Tensor:
    """log p(x) = logsumexp_y [log p(x | y) + log pi_y]: [batch] from [batch, classes] and [classes]."""
    return torch.logsumexp(log_px_given_y + class_log_prior, dim=-1)


def classify(log_px_given_y: torch.Tensor, class_log_prior: torch.Tensor) -> torch.Tensor:
    """argmax_y p(y | x) = argmax_y [log p(x | y) + log pi_y]: [batch] int64."""
    return torch.argmax(log_px_given_y + class_log_prior, dim=-1)


def every_class(num_classes: int, batch: int, device: torch.device | str) -> torch.Tensor:
    """y [num_classes, batch]: row c holds class c for each of `batch` images (to sum a label out)."""
    return torch.arange(num_classes, device=device)[:, None].expand(num_classes, batch)


def sum_over_labels(q_y: Categorical, class_log_prior: torch.Tensor, per_class: torch.Tensor) -> torch.Tensor:
    """sum_y q(y | x) [per_class_y + log pi_y] + H(q(y | x)): [batch], nats per image.

    per_class [num_classes, batch]: a bound on log p(x | y) for every class (the ELBO, or the IW
    bound). Then this is a bound on log p(x) (Kingma et al. 2014, eq. 7), computed by exact
    enumeration over the classes, never by sampling y. q_y: batch shape [batch]; class_log_prior
    [num_classes].
    """
    weighted = (q_y.probs.movedim(-1, 0) * (per_class + class_log_prior[:, None])).sum(0)
    return weighted + q_y.entropy()


def unlabelled_elbo(model, x: torch.Tensor, samples: int = 1, generator: torch.Generator | None = None,
                    noise: torch.Tensor | None = None) -> ElboTerms:
    """The bound on log p(x) of a family with a classifier (M2), with y summed out: [batch] each.

    elbo = sum_y q(y | x) [ELBO(x, y) + log pi_y] + H(q(y | x))
         = E_q(y|x)[recon_y] - (E_q(y|x)[KL_y(z)] + KL(q(y | x) || pi)),
    so recon and kl keep their meaning (kl now also holds label_kl = KL(q(y | x) || pi)).
    x: [batch, *image_shape]; every image is encoded and decoded under every class, `samples`
    draws of z each; noise, if given, is [samples, num_classes, batch, d].
    """
    labels = every_class(model.num_classes, x.shape[0], x.device)
    per_class = elbo(model, x, labels, samples, generator, noise)  # [classes, batch] each
    q_y = model.classifier(x)
    probs = q_y.probs.movedim(-1, 0)  # [classes, batch]
    label_kl = -sum_over_labels(q_y, model.class_log_prior(), torch.zeros_like(per_class.elbo))
    recon = (probs * per_class.recon).sum(0)
    kl = (probs * per_class.kl).sum(0) + label_kl
    return ElboTerms(elbo=recon - kl, recon=recon, kl=kl, label_kl=label_kl)


@torch.no_grad()
def confusion_matrix(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Counts of (true class y, argmax_y q(y | x)) for a family with a classifier: [classes, classes] int64.

    x: [n, *image_shape], y: [n] int64; rows are the true classes, so the trace over n is the accuracy.
    """
    classes = model.num_classes
    counts = torch.zeros(classes * classes, dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        predicted = model.classifier(x[start : start + batch_size]).logits.argmax(-1)
        counts += torch.bincount(y[start : start + batch_size] * classes + predicted, minlength=classes * classes)
    return counts.view(classes, classes)
