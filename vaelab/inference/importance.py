"""Importance sampling: log p(x) estimated with q as proposal, for any model with the members of
`vaelab.models.Model`, and the class-conditional figures built on it.

Pure math: no files, no printing. Every result is in nats per image, shape [batch] unless said.
Randomness comes only from the `generator` argument (a torch.Generator on the data's device).

    log_likelihood_is(...)        the importance-sampled estimate of log p(x), chunked so that
                                  K = 1000 or more fits in memory
    log_likelihood_prefixes(...)  that estimate from the first n draws for several n, from one set of draws
    log_likelihood_per_class / log_marginal_likelihood / classify: the class-conditional extras,
                                  log p(x) = logsumexp_y [log p(x | y) + log pi_y] and argmax_y p(y | x)
    confusion_matrix              how often q(y | x) names each class for each true class
"""

from __future__ import annotations

import math

import torch

from ..models import read
from .bounds import LogWeights, draw_noise, make_log_weights


def log_likelihood_is(model, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 1000,
                      generator: torch.Generator | None = None, chunk: int = 250,
                      log_weights: LogWeights | None = None, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) (log p(x | y) for a conditional model) with q as proposal: [batch].

    Draws `samples` sets of latents per image in chunks of `chunk`, keeping a running logsumexp, so
    memory is O(chunk * batch * pixels) whatever `samples` is. A stochastic lower bound on log p(x)
    whose gap shrinks as `samples` grows (it equals iw_bound with k = samples). `log_weights` (from
    `make_log_weights`) may supply a compiled evaluation of the weights. q reads `seen` where given
    (`models.read`): any proposal leaves the estimate one of log p(x).
    """
    return log_likelihood_prefixes(model, x, y, (samples,), generator, chunk, log_weights, seen)[0]


def log_likelihood_prefixes(model, x: torch.Tensor, y: torch.Tensor | None, sizes: tuple[int, ...],
                            generator: torch.Generator | None = None, chunk: int = 250,
                            log_weights: LogWeights | None = None, seen: torch.Tensor | None = None) -> list[torch.Tensor]:
    """`log_likelihood_is` from the first n of one sequence of draws, for each n in `sizes`: [batch] each.

    max(sizes) draws are decoded once; the estimate for n uses draws 1..n of that one sequence (the
    same numbers `log_likelihood_is` with n samples and the same generator draws only where its
    chunks fall alike: torch draws a chunk of another size differently). Evaluation uses this
    to serve log p(x | y) with K samples and the per-class estimate with fewer from the same decoder
    passes. The amortised pass of q (`model.posterior`, of `seen` where given) is made once for all the draws.
    """
    log_weights = log_weights or make_log_weights(model)
    total = max(sizes)
    with torch.inference_mode():
        posterior = model.posterior(read(x, seen), y)
        running: list[torch.Tensor | None] = [None] * len(sizes)
        done = 0
        while done < total:
            size = min(chunk, total - done)
            noise = draw_noise(model, size, x.shape[0], generator, x.device, x.dtype)
            log_w = log_weights(x, y, posterior, noise)  # [size, batch]
            for i, n in enumerate(sizes):
                if n > done:
                    part = torch.logsumexp(log_w[: n - done], dim=0)
                    running[i] = part if running[i] is None else torch.logaddexp(running[i], part)
            done += size
        return [value - math.log(n) for value, n in zip(running, sizes)]


def log_likelihood_per_class(model, x: torch.Tensor, samples: int, generator: torch.Generator | None = None,
                             chunk: int = 250, log_weights: LogWeights | None = None,
                             known: tuple[torch.Tensor, torch.Tensor] | None = None,
                             seen: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x | y) for every class y, each from `samples` importance samples: [batch, num_classes].

    All (image, class) pairs are decoded together, `chunk` draws at a time for each of them.
    known = (labels [batch], estimates [batch]): one class per image whose estimate, made with
    `samples` draws, is already at hand (the true class, whose K draws evaluation decodes anyway);
    only the other classes are drawn. Every class still gets exactly `samples` draws, so the
    classifier built on these estimates favours none. q reads `seen` where given (`models.read`).
    """
    batch, classes = x.shape[0], model.num_classes
    offsets = torch.arange(0 if known is None else 1, classes, device=x.device)
    labels = offsets.expand(batch, -1) if known is None else (known[0][:, None] + offsets) % classes
    pairs = labels.shape[1]
    def paired(images):
        return images[:, None].expand(batch, pairs, *images.shape[1:]).reshape(batch * pairs, *images.shape[1:])

    estimates = log_likelihood_is(model, paired(x), labels.reshape(-1), samples, generator, max(1, chunk // pairs),
                                  log_weights, None if seen is None else paired(seen)).view(batch, pairs)
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


@torch.no_grad()
def confusion_matrix(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Counts of (true class y, argmax_y q(y | x)) for a family with a classifier: [classes, classes] int64.

    x: [n, *image_shape] (what q reads), y: [n] int64; rows are the true classes, so the trace over n is the accuracy.
    """
    classes = model.num_classes
    counts = torch.zeros(classes * classes, dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        predicted = model.classifier(x[start : start + batch_size]).logits.argmax(-1)
        counts += torch.bincount(y[start : start + batch_size] * classes + predicted, minlength=classes * classes)
    return counts.view(classes, classes)
