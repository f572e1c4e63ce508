"""`Family`: what a family may build on, the objective of a model whose every label is known."""

from __future__ import annotations

import torch
from torch import nn

from .interface import Bound, Noise, Terms


class Family(nn.Module):
    """A torch module with the default `Model.objective`: the chosen bound with the labels given.

    A family that sums a missing label out (one with a classifier, see `M2`) overrides `objective`;
    every other family inherits it. `settings` names the `vaelab train` settings its constructor
    takes (fields of `vaelab.config.TrainConfig`; a family with a setting of its own adds a field
    there): it is handed those, and nothing else, by `models.build_model`.
    """

    settings: tuple[str, ...] = ()

    def objective(self, x: torch.Tensor, y: torch.Tensor | None, noise: Noise, bound: Bound,
                  kl_weight: torch.Tensor | float = 1.0) -> Terms:
        """The bound (`inference.elbo` or `inference.iw_bound`) of images whose label, if any, is given."""
        if noise.unlabelled is not None:
            raise ValueError(f"{type(self).__name__} has no classifier to sum a missing label out; "
                             "give every image its label")
        return bound(self, x, y, noise.labelled, kl_weight)


# q(y | x) below this weighs nothing in an enumeration over the classes (`class_weights`)
NEGLIGIBLE_CLASS = 1e-20


def class_weights(probs: torch.Tensor) -> torch.Tensor:
    """q(y | x) as the weights of an exact enumeration over the classes, any shape: the
    probabilities themselves, with those below `NEGLIGIBLE_CLASS` set to 0.

    A confident classifier puts some classes below float32's smallest normal number (1.2e-38);
    weighing a class's decoder pass by such a subnormal number makes its backward pass several
    times slower on a CPU (measured on the M2 recipe: a training step 275 ms, 45 ms with this), while
    what such a class adds to a bound of a few hundred nats is below 1e-17 nats, under float32's
    resolution of the bound. Its gradient to q(y | x), as small, is dropped with it.
    """
    return torch.where(probs > NEGLIGIBLE_CLASS, probs, torch.zeros_like(probs))


def join_terms(pieces: list[Terms], like: torch.Tensor) -> Terms:
    """The Terms of a batch's parts in order, [sum of their batches] each: the unlabelled images'
    and the labelled ones' of a semi-supervised step; an empty Terms (no image: a process's empty
    share of a short batch) on `like`'s device and dtype when there are none."""
    if not pieces:
        empty = like.new_zeros(0)
        return Terms(empty, empty, {})
    if len(pieces) == 1:
        return pieces[0]
    return Terms(torch.cat([p.maximised for p in pieces]), torch.cat([p.bound for p in pieces]),
                 {name: torch.cat([p.parts[name] for p in pieces]) for name in pieces[0].parts})
