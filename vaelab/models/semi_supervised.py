"""Kingma et al. (2014)'s semi-supervised M2: the CVAE's generative model and a classifier q(y | x),
the missing label summed out of the bound by exact enumeration over the classes (`sum_over_labels`),
and the weight of the classifier's term (`default_alpha`), which the ADGM shares.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.distributions import Categorical

from .base import class_weights, labelled_and_unlabelled, with_label
from .families import GAUSSIAN_SETTINGS, CVAE
from .interface import Bound, DataFacts, Noise, Terms, read
from .networks import NETWORKS, Network, build_classifier
from .settings import Setting

ALPHA = Setting(float, None, "weight of log q(y | x) on the mean over a step's labelled images; default: 0.1 x "
                "training images / labelled images, Kingma et al.'s and Maaloe et al.'s (50 with 100 labels of 50,000)",
                minimum=0.0, maximum=1e6, optional=True)


class M2(CVAE):
    """Kingma et al. (2014)'s semi-supervised M2: the CVAE's generative model, and a classifier q(y | x).

    Where an image comes without its label, y is a latent variable: the bound on log p(x) sums the
    CVAE's bound over the classes, weighted by q(y | x) (`objective`). The classifier is the chosen
    network's encoder with one output per class (`networks.build_classifier`). `alpha` weighs
    log q(y | x) of every labelled image in what is maximised (`default_alpha` when not given,
    which says how a training step weighs the labelled images).
    """

    settings = {**GAUSSIAN_SETTINGS, "latent_dim": replace(GAUSSIAN_SETTINGS["latent_dim"], default=50), "alpha": ALPHA}
    # the recipe with which the unlabelled images teach q(y | x) (docs/results.md): one hidden
    # layer of 500 softplus units in every network (Kingma et al.'s, Pyro's), 200 unlabelled images
    # per step beside the labelled batch, q reading the gray levels of the binarised images, and
    # the bound averaged over every binarisation of them
    defaults = {"hidden": (500,), "activation": "softplus", "batch_size": 200, "encoder_input": "grayscale",
                "binarize": "expected"}

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, latent_dim: int = 50,
                 network: "str | Network" = "mlp", alpha: float = 0.0, **settings):
        super().__init__(image_shape, num_classes, latent_dim, network=network, **settings)
        declared = NETWORKS[network].settings if isinstance(network, str) else network.settings
        given = {name: value for name, value in settings.items() if name in declared and value is not None}
        self.classifier_net = build_classifier(network, self.image_shape, num_classes, **given)
        self.alpha = alpha

    @classmethod
    def for_data(cls, data: DataFacts, alpha: float | None = None, **settings) -> "M2":
        return cls(data.image_shape, data.num_classes, alpha=default_alpha(data) if alpha is None else alpha, **settings)

    def noise_shape(self, labelled: bool = True) -> tuple[int, ...]:
        """(Σ d_l,) for an image with its label; (classes, Σ d_l) without: one draw for every class it is taken in."""
        own = super().noise_shape()
        return own if labelled else (self.num_classes, *own)

    def classifier(self, x: torch.Tensor) -> Categorical:
        """q(y | x) for images x [*batch, C, H, W]: batch shape [*batch], num_classes categories."""
        return Categorical(logits=self.classifier_net(x), validate_args=False)

    def objective(self, x: torch.Tensor, y: torch.Tensor | None, noise: Noise, bound: Bound,
                  kl_weight: torch.Tensor | float = 1.0, seen: torch.Tensor | None = None) -> Terms:
        """A bound on log p(x, y) for the last y.shape[0] images of x, whose labels y are seen, plus
        alpha log q(y | x) in what is maximised; a bound on log p(x) for the others, their label
        summed out by exact enumeration over the classes (`sum_over_labels`): [batch] each.

        The parts are recon, kl and label_kl, with bound = recon - kl - label_kl: where y is seen,
        label_kl = -log π_y (the KL from the label's one-hot to π), where not, KL(q(y | x) ‖ π).
        q(z | x, y) and q(y | x) read `seen` where given (`interface.read`).
        """
        def unlabelled(x_u, seen_u, noise_u):  # every class for every image: [classes, batch]
            labels = torch.arange(self.num_classes, device=x.device)[:, None].expand(self.num_classes, x_u.shape[0])
            per_class = bound(self, x_u, labels, noise_u.movedim(2, 1), kl_weight, seen=seen_u)
            return sum_over_labels(self.classifier(seen_u), self.class_log_prior(), per_class)

        def labelled(x_l, seen_l, y, noise_l):
            return with_label(bound(self, x_l, y, noise_l, kl_weight, seen=seen_l), self.class_log_prior()[y],
                              self.classifier(seen_l).log_prob(y), self.alpha)

        return labelled_and_unlabelled(x, y, noise, read(x, seen), unlabelled, labelled)

    def part_words(self) -> dict[str, str]:
        words = super().part_words()
        return {**words, "label_kl": "label term KL(q(y | x) ‖ π), or −log π_y where y is seen"}

    def equations(self) -> list[str]:
        lines = super().equations()
        return lines[:-1] + [
            f"q_φ(y | x) = Categorical(softmax g_φ(x)),  g_φ: {self.classifier_net.description}",
            "labelled:  log p(x, y) ≥ ELBO(x, y) + log π_y,  trained with + α log q_φ(y | x)",
            "unlabelled:  log p(x) ≥ Σ_y q_φ(y | x) [ELBO(x, y) + log π_y] + H(q_φ(y | x))",
            lines[-1].replace("ŷ(x) = argmax_y π_y p_θ(x | y)", "ŷ(x) = argmax_y q_φ(y | x) or argmax_y π_y p_θ(x | y)"),
        ]


def default_alpha(data: DataFacts) -> float:
    """The weight of log q(y | x) when not given, for a model built for training (0 otherwise: alpha
    only weighs a training term).

    With a labelled batch in every step (`DataFacts.labelled_batch` > 0) the step maximises the
    mean bound of its unlabelled images plus the mean over its labelled ones of bound + alpha log
    q(y | x) (`training.step.Loss`), and alpha = 0.1 N / N_l: Kingma et al. (2014)'s alpha = 0.1 N
    on a sum over the N training images, which Maaloe et al. (2016) put on the labelled mean as
    here (50 with 100 labels of 50,000; their 60 is 0.1 x 60,000 / 100).
    With the spread plan (each labelled image once per epoch) alpha weighs each labelled image in
    the mean over all a step's images, and is 4 N / N_l, so that the labels weigh the same in all
    however many they are (2,000 with 100 labels): the plan and weight of runs made before the
    labelled batch.
    """
    if data.train_images is None:
        return 0.0
    ratio = data.train_images / (data.labelled_images or data.train_images)
    return 0.1 * ratio if data.labelled_batch else 4 * ratio


def sum_over_labels(q_y: Categorical, class_log_prior: torch.Tensor, per_class: Terms) -> Terms:
    """A bound on log p(x) from bounds on log p(x | y) for every class, [classes, batch] each
    (Kingma et al. 2014, eq. 7): sum_y q(y | x) [bound_y + log π_y] + H(q(y | x)) = E_q(y|x)[recon_y]
    - E_q(y|x)[KL_y] - KL(q(y | x) ‖ π), by exact enumeration over the classes: Terms [batch].

    What is maximised is summed the same way, with the same label term. Classes with q(y | x) below
    1e-20 weigh 0 in the sums of bounds (`class_weights`). q_y: batch shape [batch];
    class_log_prior [classes].
    """
    probs = q_y.probs.movedim(-1, 0)  # [classes, batch]
    label_kl = -(q_y.entropy() + (probs * class_log_prior[:, None]).sum(0))
    probs = class_weights(probs)  # the classes' bounds: negligible ones weigh 0
    weighted = {name: (probs * value).sum(0) for name, value in per_class.parts.items()}
    return Terms(maximised=(probs * per_class.maximised).sum(0) - label_kl,
                 bound=(probs * per_class.bound).sum(0) - label_kl, parts={**weighted, "label_kl": label_kl})
