"""`Family`: what a family may build on, the objective of a model whose every label is known."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..errors import VaelabError
from .interface import Bound, Noise, Terms
from .priors import PRIORS
from .settings import Setting


class Family(nn.Module):
    """A torch module with the default `Model.objective` (the chosen bound with the labels given)
    and the defaults of what a family declares of itself (`Model`'s capabilities).

    A family that sums a missing label out (one with a classifier, see `M2`) overrides `objective`;
    every other family inherits it. `settings` declares the settings its constructor takes, name ->
    `Setting` (type, default, limits, help): they become flags of `vaelab train`, TOML keys and
    keywords of `vaelab.train`, and `models.build_model` hands it those and nothing else (with the
    settings of its network, for a family that takes a `network`). `defaults` gives its own
    defaults to settings it does not declare (the recipe it trains best with: M2's network widths,
    batch size and encoder input). `check_settings` holds its rules between them.
    """

    settings: Mapping[str, Setting] = {}  # the settings its constructor takes
    # its defaults for settings it does not declare: its network's ("hidden") and the run's
    # ("batch_size", "encoder_input"); a value given in a file or a flag wins (`config.make_config`)
    defaults: Mapping[str, object] = {}
    priors: tuple[str, ...] = PRIORS  # the --prior values it takes
    objectives: tuple[str, ...] = ("elbo", "iwae")  # the --objective values it trains with
    binary_pixels: bool = False  # True: a Bernoulli decoder of its own (--binarize none is refused)
    pixel_words: str = "decoder means"  # what its pictures of p(x | code) show, for captions
    code_words: str = "the code"  # its representative code, for captions

    @classmethod
    def check_settings(cls, settings: Mapping, config) -> None:
        """VaelabError (one line, settings named as {name}) where the family's settings do not go
        together, or do not go with the run's: settings holds a value of every setting it takes (and
        its network's), config is the run's `vaelab.config.TrainConfig` (binarize, objective, labels,
        ...). The default's one rule: a `prior` setting, where the family has one, among its `priors`;
        a family with rules of its own calls it too (super().check_settings)."""
        if "prior" in settings and settings["prior"] not in cls.priors:
            raise VaelabError(f"{{model}} {getattr(config, 'model', cls.__name__)} takes {{prior}} "
                              + " or ".join(cls.priors) + f", not {settings['prior']}")

    @classmethod
    def settings_in_effect(cls, settings: Mapping) -> dict:
        """The settings (name -> value) that shape a model built with `settings`, for the report:
        a family leaves out those its other settings switch off (the VAE's flow_steps without an
        IAF). The default: all of them."""
        return dict(settings)

    def objective(self, x: torch.Tensor, y: torch.Tensor | None, noise: Noise, bound: Bound,
                  kl_weight: torch.Tensor | float = 1.0, seen: torch.Tensor | None = None) -> Terms:
        """The bound (`inference.elbo` or `inference.iw_bound`) of images whose label, if any, is given;
        q reads `seen` where given (`Model.objective`)."""
        if noise.unlabelled is not None:
            raise ValueError(f"{type(self).__name__} has no classifier to sum a missing label out; "
                             "give every image its label")
        return bound(self, x, y, noise.labelled, kl_weight, seen=seen)


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


def labelled_and_unlabelled(x: torch.Tensor, y: torch.Tensor | None, noise: Noise, seen: torch.Tensor,
                            unlabelled: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Terms],
                            labelled: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], Terms]) -> Terms:
    """The Terms of a semi-supervised batch x [batch, C, H, W] whose last y.shape[0] images come with
    their labels y, q reading `seen` (x's shape: x itself, or its gray levels; `interface.read`):
    `unlabelled(x_u, seen_u, noise.unlabelled)` for the others (first), `labelled(x_l, seen_l, y,
    noise.labelled)` for them, joined in x's order (`join_terms`): [batch] each."""
    labelled_count = 0 if y is None else y.shape[0]
    u = x.shape[0] - labelled_count
    pieces = ([unlabelled(x[:u], seen[:u], noise.unlabelled)] if u else []) \
        + ([labelled(x[u:], seen[u:], y, noise.labelled)] if labelled_count else [])
    return join_terms(pieces, x)


def with_label(terms: Terms, log_pi: torch.Tensor, log_q_y: torch.Tensor, alpha: float) -> Terms:
    """A bound on log p(x, y) from `terms` on log p(x | y) of images whose label y is seen: log π_y
    [batch] added (the part label_kl = -log π_y, the KL from the label's one-hot to π), and alpha
    log q(y | x) (`log_q_y` [batch]) in what is maximised: the classifier learns from the labels."""
    return Terms(maximised=terms.maximised + log_pi + alpha * log_q_y, bound=terms.bound + log_pi,
                 parts={**terms.parts, "label_kl": -log_pi})


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
