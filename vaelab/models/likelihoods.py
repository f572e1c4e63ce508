"""p(x | z): the per-pixel distribution a decoder network's output parameterises.

`bernoulli` is the likelihood of binarised images; `gaussian` and `continuous-bernoulli` model
intensities in [0, 1] (a Bernoulli "likelihood" of such pixels is not a likelihood). Every pixel of
every channel (grey, red, green, blue, ...) is one independent factor. `MEAN_WORDS` names each
one's mean image, which every picture and caption shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent, Normal

LIKELIHOODS = ("bernoulli", "gaussian", "continuous-bernoulli")

# the decoder's distribution as a line of the report's equations; {inputs} is what f_θ reads
EQUATIONS = {"bernoulli": "Bernoulli(σ(f_θ({inputs})))",
             "gaussian": "N(σ(f_θ({inputs})), diag s²),  s = softplus(a learned number per pixel) + 0.01",
             "continuous-bernoulli": "ContinuousBernoulli(σ(f_θ({inputs})))"}

# what the decoder's mean image is, in words, for every picture and caption that shows one
MEAN_WORDS = {"bernoulli": "Bernoulli means", "gaussian": "Gaussian means",
              "continuous-bernoulli": "continuous-Bernoulli means"}

MIN_SCALE = 0.01  # the Gaussian's standard deviation stays above this, so its density cannot collapse


def pixel_distribution(likelihood: str, logits: torch.Tensor, raw_scale: torch.Tensor | None = None) -> Distribution:
    """p(x | z) from decoder outputs `logits` [*batch, C, H, W]: batch shape [*batch], event [C, H, W].

    Bernoulli and continuous Bernoulli take the outputs as logits; the Gaussian's mean is
    sigmoid(logits) and its per-pixel standard deviation softplus(raw_scale) + 0.01, raw_scale
    holding one learned number per pixel (C * H * W of them).
    """
    if likelihood == "bernoulli":
        base = Bernoulli(logits=logits, validate_args=False)
    elif likelihood == "continuous-bernoulli":
        base = ContinuousBernoulli(logits=logits, validate_args=False)
    elif likelihood == "gaussian":
        scale = (F.softplus(raw_scale) + MIN_SCALE).view(logits.shape[-3:])
        base = Normal(torch.sigmoid(logits), scale.expand_as(logits), validate_args=False)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return Independent(base, 3)


def decoder_mean(distribution: Distribution) -> torch.Tensor:
    """The mean image of p(x | z): Bernoulli probabilities, Gaussian means, continuous-Bernoulli means."""
    return distribution.base_dist.mean if isinstance(distribution, Independent) else distribution.mean


def mean_words(likelihood: str) -> str:
    """The decoder's mean image of a `likelihood` (--likelihood) in words: "Bernoulli means", "Gaussian
    means" or "continuous-Bernoulli means" (what `decoder_mean` gives, never thresholded samples)."""
    if likelihood not in MEAN_WORDS:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return MEAN_WORDS[likelihood]
