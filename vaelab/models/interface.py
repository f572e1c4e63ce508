"""The model interface: what every family declares, and what a family may add.

A family is any object with the members of `Model`; every estimator in `vaelab.objectives`, the
trainer, the evaluation, the API and the report work with it through these members alone. They
never ask which family a model is, only what it can do:

    isinstance(model, ClassConditional)   it has a class label y ~ Categorical(pi)
    isinstance(model, Classifies)         it also has a classifier q(y | x)

Shapes follow one convention (ZhuSuan's). An image batch is [*batch, C, H, W] with
(C, H, W) = `image_shape`, taken from the dataset's spec; a latent batch is [*batch, d] with
d = `latent_dim`. A distribution over images has event shape [C, H, W], one over codes event
shape [d], and batch shape `*batch` (often [samples, batch]); `log_prob` sums over the event, so
it is in nats per image. Labels y are int64 class indices whose shape is a suffix of the batch
shape; a family without a class label ignores them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch.distributions import Categorical, Distribution


@runtime_checkable
class Model(Protocol):
    """What every family declares: p(z), p(x | z[, y]) and q(z | x[, y])."""

    image_shape: tuple[int, int, int]  # (C, H, W) of one image
    latent_dim: int  # d

    def prior(self) -> Distribution:
        """p(z): event [d], batch shape [] (it broadcasts against any batch)."""

    def encoder(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z | x[, y]) for images x [*batch, C, H, W] in [0, 1]: batch shape [*batch], event [d].

        A diagonal Gaussian (Independent(Normal, 1)) in every family so far: the trainer and the
        estimators reparameterise it with drawn noise (`objectives.reparameterize`).
        """

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z[, y]) for codes z [*batch, d]: batch shape [*batch], event [C, H, W]."""

    def equations(self) -> list[str]:
        """The model as lines of Unicode math, for the report (the same lines in HTML and PDF)."""


@runtime_checkable
class ClassConditional(Model, Protocol):
    """A family with a class label: y ~ Categorical(pi), and y enters p(x | y, z) and q(z | x, y).

    With such a model the evaluation adds log p(x) = logsumexp_y [log p(x | y) + log pi_y] and the
    classifier argmax_y p(y | x), and the pictures get one row per class.
    """

    num_classes: int

    def class_log_prior(self) -> torch.Tensor:
        """log pi: [num_classes], nats."""


@runtime_checkable
class Classifies(Protocol):
    """What a family may add: an amortised classifier q(y | x) (the semi-supervised M2 has one)."""

    def classifier(self, x: torch.Tensor) -> Categorical:
        """q(y | x) for images x [*batch, C, H, W]: batch shape [*batch], num_classes categories."""


def class_conditional(model: Model) -> bool:
    """Whether `model` has a class label y (see `ClassConditional`)."""
    return isinstance(model, ClassConditional)
