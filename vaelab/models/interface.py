"""The model interface: what every family declares, and what a family may add.

A family is any object with the members of `Model`; the bounds and estimators in
`vaelab.inference`, the trainer, the evaluation, the API, the report and the explorer work with it
through these members alone. They never ask which family a model is, only what it can do:

    isinstance(model, ClassConditional)   it has a class label y ~ Categorical(pi)
    isinstance(model, Classifies)         it also has a classifier q(y | x)
    isinstance(model, Simulates)          it draws images with the noise of their latents (BDMC)
    isinstance(model, FixesPrior)         its prior costs work that can be done once (`fixed_prior`)
    isinstance(model, ShowsLatents)       it shows each latent's draws and q's density at any value,
                                          for the diagnostics (active units, KL per unit, I(x; z))

A family owns its latents and its bound. Its latents may be one Gaussian z, a flow on top of one,
several layers z1, z2, ..., or an auxiliary variable: the estimators see them only through

    posterior(x, y)                     the amortised pass of q (once per batch), a tuple of tensors
    densities(x, y, posterior, noise)   base noise -> the latents, in one pass: log p(x | latents) and
                                        every latent's log q - log p at the draw (`Densities`)

so a flow posterior costs one forward pass and nothing is ever inverted. How it is trained is its
`objective`, which calls the shared bounds (`inference.elbo`, `inference.iw_bound`) and returns
named `Terms`. For pictures a family gives a representative code per image (`code`: the Gaussian's
mean), decodes codes (`decoder`) and draws them from its prior (`sample_codes`).

What the likelihood scores and what q reads may differ: x is always the image whose probability
the bound is on (binarised pixels, say), and the networks that read an image may be given another
view of it, `seen` (the gray levels those pixels were drawn from). q may condition on anything, so
every bound and estimate stays one on log p(x). A family reads images for q through `read(x, seen)`
in its `objective`; the estimators hand `posterior`, `classifier` and `code` what q reads.

Shapes follow one convention (ZhuSuan's). An image batch is [*batch, C, H, W] with (C, H, W) =
`image_shape`, taken from the dataset's spec; base noise is [samples, *batch, *noise_shape()];
a code batch is [*batch, code_dim]. Everything a family returns per image is in nats per image.
Labels y are int64 class indices whose shape is a suffix of the batch shape; a family without a
class label ignores them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch.distributions import Categorical, Distribution

from .settings import Setting


@dataclass(frozen=True)
class Densities:
    """One set of draws of a family's latents, as every estimator reads them; nats per image.

    log_px [samples, *batch]: log p(x | latents[, y]).
    kl {name: tensor}: for each latent (or group of latents) log q(latent | ...) - log p(latent | ...)
    at the draw, [samples, *batch]; their sum is log q(latents | x) - log p(latents), so the
    importance weight is log_px - sum(kl) (`inference.log_weight`). Asked with closed_form=True,
    a family may give a term's expectation under q instead, [*batch] (the Gaussian's analytic KL).
    The names are the bound's parts (`Model.part_words`): "kl" for one latent, "kl_z1", "kl_z2" ...
    """

    log_px: torch.Tensor
    kl: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Terms:
    """What a bound gives for a batch, each [*batch] in nats per image.

    maximised: what training maximises (with KL warm-up or a β above 1, or a classifier's term,
    not a bound); bound: the true bound on log p(x[, y]), the number that is logged; parts: its
    named parts ("recon" = E_q[log p(x | latents)], one KL per latent, what a family adds), whose
    words the family gives in `part_words`. For the ELBO, bound = recon - the sum of the others.
    """

    maximised: torch.Tensor
    bound: torch.Tensor
    parts: dict[str, torch.Tensor]


class Noise(NamedTuple):
    """A training step's base noise: for its unlabelled images (those first in the batch) and its
    labelled ones, [samples, images, *noise_shape(labelled)] each, or None where there are none."""

    unlabelled: torch.Tensor | None
    labelled: torch.Tensor | None


# a shared bound (inference.elbo, inference.iw_bound): (model, x, y, noise, kl_weight) -> Terms
Bound = Callable[..., Terms]


@runtime_checkable
class Model(Protocol):
    """What every family declares: its latents and their posterior, p(x | code), and how it is trained."""

    image_shape: tuple[int, int, int]  # (C, H, W) of one image
    code_dim: int  # the size of the representative code the pictures use

    def noise_shape(self, labelled: bool = True) -> tuple[int, ...]:
        """The base noise of one draw for one image, N(0, I) of this shape: (d,) for a Gaussian z.
        labelled=False: for an image whose label a family with a classifier sums out."""

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The amortised pass of q(latents | x[, y]) for x [*batch, C, H, W] in [0, 1]: what the
        draws need, [*batch, ...] each (the Gaussian's loc and scale), made once per batch."""

    def densities(self, x: torch.Tensor, y: torch.Tensor | None, posterior: tuple[torch.Tensor, ...],
                  noise: torch.Tensor, closed_form: bool = False) -> Densities:
        """Draws of the latents from base noise [samples, *batch, *noise_shape()], with their log-densities."""

    def objective(self, x: torch.Tensor, y: torch.Tensor | None, noise: Noise, bound: Bound,
                  kl_weight: torch.Tensor | float = 1.0, seen: torch.Tensor | None = None) -> Terms:
        """What training maximises on a batch x [batch, C, H, W] whose last y.shape[0] images come
        with their labels y (the others' a family with a classifier sums out): Terms [batch] each.

        bound: the shared bound to use (`inference.BOUNDS`, by --objective); kl_weight weighs every
        latent's log p - log q in what is maximised (warm-up, β). seen: what the networks that read
        an image (q, a classifier) are given instead of x, x's shape (the gray levels of binarised
        images, `--encoder-input grayscale`), or None: x itself (`read`).
        """

    def part_words(self) -> dict[str, str]:
        """Every part its Terms may hold, in words for the report: {"recon": ..., "kl": ...}."""

    def code(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """A representative code of each image: [*batch, code_dim] (the Gaussian's mean)."""

    def decoder(self, code: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | code[, y]) for codes [*batch, code_dim]: batch shape [*batch], event [C, H, W]."""

    def sample_codes(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """`count` codes drawn from the prior with `generator` (on the model's device): [count, code_dim]."""

    def equations(self) -> list[str]:
        """The model as lines of Unicode math, for the report (the same lines in HTML and PDF)."""

    # What a family declares of itself (`Family` gives each a default): the settings its constructor
    # takes (name -> Setting), the --prior and --objective values it takes, whether its decoder is a
    # Bernoulli of its own (binarised pixels only), and for captions what its pictures of
    # p(x | code) show ("Bernoulli means") and what its code is ("E_q[z]").
    settings: Mapping[str, Setting]
    priors: tuple[str, ...]
    objectives: tuple[str, ...]
    binary_pixels: bool
    pixel_words: str
    code_words: str

    @classmethod
    def check_settings(cls, settings: Mapping, config) -> None:
        """Its rules between its settings (a value of each) and the run's config: VaelabError where they
        do not go together (`Family.check_settings`)."""

    @classmethod
    def settings_in_effect(cls, settings: Mapping) -> dict:
        """The settings that shape a model built with `settings`, for the report (`Family.settings_in_effect`)."""


# what a family's class itself has, before any instance (image_shape and code_dim are an instance's)
FAMILY_MEMBERS = ("noise_shape", "posterior", "densities", "objective", "part_words", "code", "decoder",
                  "sample_codes", "equations", "settings", "check_settings", "settings_in_effect", "priors",
                  "objectives", "binary_pixels", "pixel_words", "code_words")


@runtime_checkable
class ClassConditional(Model, Protocol):
    """A family with a class label: y ~ Categorical(pi), and y enters p(x | y, ...) and q(... | x, y).

    With such a model the evaluation adds log p(x) = logsumexp_y [log p(x | y) + log pi_y] and the
    classifier argmax_y p(y | x), and the pictures get one row per class.
    """

    num_classes: int

    def class_log_prior(self) -> torch.Tensor:
        """log pi: [num_classes], nats."""


@runtime_checkable
class Classifies(Protocol):
    """What a family may add: an amortised classifier q(y | x) (the semi-supervised M2 has one).

    Such a family trains on unlabelled images too (its `objective` sums their label out), and the
    evaluation adds its classifier's accuracy and its bound with the label summed out."""

    def classifier(self, x: torch.Tensor) -> Categorical:
        """q(y | x) for images x [*batch, C, H, W]: batch shape [*batch], num_classes categories."""


class Simulated(NamedTuple):
    """Images drawn from a model (`Simulates.simulate`): x [count, C, H, W], their labels y [count]
    (None for a family without a class label), and the base noise [count, *noise_shape()] whose
    draw under q(latents | x[, y]) gives the very latents x was generated from. That noise is an
    exact draw of the posterior p(latents | x[, y]) carried over to the noise, where a reverse AIS
    chain starts (bidirectional Monte Carlo, `vaelab.inference.annealing`)."""

    x: torch.Tensor
    y: torch.Tensor | None
    noise: torch.Tensor


@runtime_checkable
class Simulates(Protocol):
    """What a family may add (every family of vaelab has it): draws of the whole generative model,
    with the base noise that reproduces their latents, for bidirectional Monte Carlo."""

    def simulate(self, count: int, generator: torch.Generator | None) -> Simulated:
        """`count` images (labels drawn from π first, for a class-conditional family), each with its
        latents drawn from the prior, with `generator`; see `Simulated`."""


@dataclass(frozen=True)
class Latent:
    """One latent variable of a family at a batch of draws (`ShowsLatents.shown`), for the diagnostics.

    draws [samples, *batch, dim]: its value at each draw of the base noise.
    mean [*batch, dim] or None: E_q[u | x] of every unit where the family has it in closed form
    (a Gaussian's μ); None: the diagnostics estimate it from the draws.
    kl_dims [samples, *batch, dim] or None: KL(q(u_i | ...) ‖ p(u_i | ...)) of every unit i in closed
    form given the draws of the latents that q and p of this one condition on, where both are
    diagonal Gaussians (nats); summed over the units, its mean is the latent's KL part.
    part: the name of this latent's KL in `Densities.kl` and the bound's parts ("kl", "kl_z1", "kl_a").
    """

    draws: torch.Tensor
    mean: torch.Tensor | None
    kl_dims: torch.Tensor | None
    part: str


@runtime_checkable
class ShowsLatents(Protocol):
    """What a family may add (every family of vaelab has it): its latents by name, and the density of
    its whole posterior at any value of them, from which `vaelab.inference.latents` finds the active
    units, the KL of every unit and the mutual information I(x; latents) without knowing the family.

    information_images: how many test images I(x; latents) takes by default (None: all of them): the
    estimator scores every pair of images, and a pair costs a Gaussian density per layer for Gaussian
    layers (one, or a hierarchy) but network passes for an auxiliary variable or an IAF (d passes inverted).
    """

    information_images: int | None

    def shown(self, x: torch.Tensor, y: torch.Tensor | None, posterior: tuple[torch.Tensor, ...],
              noise: torch.Tensor) -> dict[str, "Latent"]:
        """Every latent by its name ("z"; "z1", "z2"; "a", "z"), drawn from base noise [samples, *batch,
        *noise_shape()] as `densities` draws them: a `Latent` each."""

    def log_posterior_pairs(self, posterior: tuple[torch.Tensor, ...],
                            values: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(latents = values_i | x_j[, y_j]) for every pair: `posterior` the pass over images j
        ([m, ...] each), values {name: [n, dim]} one value of every latent for each of n others:
        [n, m], nats."""


@runtime_checkable
class FixesPrior(Protocol):
    """What a family may add: a prior whose making costs work (the VampPrior encodes its pseudo-inputs),
    done once for a stretch in which the parameters do not change: a whole evaluation, or one
    training step (`prior_fixed`)."""

    def fixed_prior(self) -> AbstractContextManager[None]:
        """A context within which the prior is made once, on entry, and reused by every draw."""


def prior_fixed(model: Model) -> AbstractContextManager[None]:
    """`model.fixed_prior()` for a family that has it (`FixesPrior`), else a context that does nothing."""
    return model.fixed_prior() if isinstance(model, FixesPrior) else nullcontext()


@dataclass(frozen=True)
class DataFacts:
    """What a family may know of its data when it is built: (C, H, W), the classes, and, when it is
    built for training, how many training images there are, how many of them keep their label, and
    how many labelled images ride in every step (`training.epoch.batch_plan`; 0: each labelled
    image once per epoch, spread over the steps)."""

    image_shape: tuple[int, int, int]
    num_classes: int
    train_images: int | None = None
    labelled_images: int | None = None
    labelled_batch: int = 0


def class_conditional(model: Model) -> bool:
    """Whether `model` has a class label y (see `ClassConditional`)."""
    return isinstance(model, ClassConditional)


def read(x: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
    """What the networks that read an image are given: `seen` where a run gives them another view
    of x (its gray levels), else x itself."""
    return x if seen is None else seen
