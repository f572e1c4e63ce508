"""Latent-variable models: each declares p(z), p(x | z[, y]) and q(z | x[, y]) as torch distributions.

Shapes follow one convention (ZhuSuan's): a distribution over images has event shape [784] and
batch shape [samples, batch] or [batch]; its `log_prob` is summed over the event, in nats per image.
Anything with these four methods works with every estimator in `vaelab.objectives`:

    prior()            -> distribution over z, event [d], batch shape [] (broadcasts)
    encoder(x, y)      -> q(z | x, y), batch shape x.shape[:-1], event [d]
    decoder(z, y)      -> p(x | z, y), batch shape z.shape[:-1], event [784]
    class_log_prior()  -> log pi, shape [num_classes] (conditional models only)

`y` is an int64 tensor of class indices whose shape is a suffix of the batch shape; unconditional
models take y=None.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent, Normal

MODEL_KINDS = ("vae", "cvae")


class _ReLUFunction(torch.autograd.Function):
    # forward and setup_context apart, so torch.func.grad can differentiate it too
    @staticmethod
    def forward(x):
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y.sign()  # relu'(x): 1 where x > 0, else 0 (= sign(relu(x)))


class ReLU(nn.Module):
    """max(x, 0), with the same value and derivative as nn.ReLU, its backward reading the saved output.

    Why not nn.ReLU: under torch.compile on a CPU (torch 2.13) autograd saves a boolean mask for
    ReLU's backward, and the generated code stores boolean masks slowly, 0.5 ms per 128 x 500
    activations: 1 ms of a 10 ms CVAE training step. Reading the sign of the (already saved)
    output avoids the mask; tests/test_fast.py checks that the gradients match nn.ReLU's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReLUFunction.apply(x)


ACTIVATIONS = {"relu": ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "gelu": nn.GELU}
LIKELIHOODS = ("bernoulli", "gaussian", "continuous-bernoulli")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's architecture (stored in a run's config.json)."""

    model: str = "cvae"
    latent_dim: int = 40
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "relu"
    likelihood: str = "bernoulli"
    data_dim: int = 784
    num_classes: int = 10

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        values = dict(values)
        values["hidden"] = tuple(values.get("hidden", cls.hidden))
        return cls(**values)


class ConditionalLinear(nn.Module):
    """W [inputs, onehot(y)] + b, computed as W_in inputs + onehot(y) W_y + b.

    The label term is a small matmul on the [batch, classes] one-hot, added by broadcasting, so
    a [samples, batch, ...] input never needs a one-hot copy per sample. (Indexing W_y[y] would
    be cheaper, but its backward accumulates with atomics on CPU and breaks reproducibility.)

    inputs: [..., in_features]; y: int64 with a shape that broadcasts against inputs.shape[:-1], or None.
    """

    def __init__(self, in_features: int, out_features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        # Same initial scale as a Linear layer over the concatenated [inputs, onehot] vector.
        bound = 1.0 / math.sqrt(in_features + num_classes)
        self.class_weight = nn.Parameter(torch.empty(num_classes, out_features).uniform_(-bound, bound)) if num_classes else None
        if num_classes:
            nn.init.uniform_(self.linear.weight, -bound, bound)
            nn.init.uniform_(self.linear.bias, -bound, bound)

    def forward(self, inputs: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = self.linear(inputs)
        if self.class_weight is not None:
            if y is None:
                raise ValueError("this model is class-conditional: pass the labels y")
            out = out + F.one_hot(y, self.class_weight.shape[0]).to(self.class_weight.dtype) @ self.class_weight
        return out


class MLP(nn.Module):
    """An MLP whose first layer may also see a class label: in -> hidden... -> out (linear head)."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], out_features: int, activation: str, num_classes: int):
        super().__init__()
        widths = (in_features, *hidden)
        self.first = ConditionalLinear(widths[0], widths[1] if hidden else out_features, num_classes)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[1:], widths[2:]):
            layers += [ACTIVATIONS[activation](), nn.Linear(width_in, width_out)]
        if hidden:
            layers += [ACTIVATIONS[activation](), nn.Linear(widths[-1], out_features)]
        self.rest = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.rest(self.first(inputs, y))


class VAE(nn.Module):
    """Kingma & Welling's VAE with MLP encoder and decoder; `CVAE` adds a class label to both.

    Encoder: h = act(W x + b) (one or more layers), mu and log sigma^2 from linear heads;
    q(z | x) = N(mu, diag sigma^2). Prior p(z) = N(0, I). Decoder: p(x | z) Bernoulli(logits) for
    binarised data, or Gaussian / continuous Bernoulli for grayscale data.
    """

    conditional = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {config.activation!r}")
        if config.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {config.likelihood!r}")
        self.config = config
        classes = config.num_classes if self.conditional else 0
        self.num_classes = classes
        self.encoder_net = MLP(config.data_dim, config.hidden, 2 * config.latent_dim, config.activation, classes)
        self.decoder_net = MLP(config.latent_dim, tuple(reversed(config.hidden)), config.data_dim, config.activation, classes)
        if config.likelihood == "gaussian":
            # Per-pixel learned standard deviation, kept above 0.01 so the density cannot collapse.
            self.decoder_raw_scale = nn.Parameter(torch.zeros(config.data_dim))
        self.register_buffer("prior_loc", torch.zeros(config.latent_dim), persistent=False)
        self.register_buffer("prior_scale", torch.ones(config.latent_dim), persistent=False)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def prior(self) -> Distribution:
        """p(z) = N(0, I): batch shape [], event [d]."""
        return Independent(Normal(self.prior_loc, self.prior_scale, validate_args=False), 1)

    def encoder(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """q(z | x[, y]) = N(mu, diag exp(log sigma^2)); x: [..., 784] in [0, 1]; event [d]."""
        mu, log_var = self.encoder_net(x, y).chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)

    def decoder(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x | z[, y]); z: [..., d]; batch shape z.shape[:-1], event [784]."""
        logits = self.decoder_net(z, y)
        if self.config.likelihood == "bernoulli":
            base = Bernoulli(logits=logits, validate_args=False)
        elif self.config.likelihood == "continuous-bernoulli":
            base = ContinuousBernoulli(logits=logits, validate_args=False)
        else:
            scale = F.softplus(self.decoder_raw_scale) + 0.01
            base = Normal(torch.sigmoid(logits), scale.expand_as(logits), validate_args=False)
        return Independent(base, 1)

    def class_log_prior(self) -> torch.Tensor:
        """log pi: [num_classes], uniform (pi_j = 1 / num_classes)."""
        return torch.full((self.config.num_classes,), -math.log(self.config.num_classes), device=self.prior_loc.device)


class CVAE(VAE):
    """The class-conditional VAE: y ~ Discrete(pi), z ~ N(0, I), x | y, z ~ p(x | NN(onehot(y), z)).

    q(z | x, y) is a diagonal Gaussian whose encoder sees x and onehot(y); the one-hot label joins the
    inputs of the first encoder and decoder layers.
    """

    conditional = True


def build_model(config: ModelConfig) -> VAE:
    if config.model not in MODEL_KINDS:
        raise ValueError(f"unknown model {config.model!r}")
    return (CVAE if config.model == "cvae" else VAE)(config)


def decoder_mean(distribution: Distribution) -> torch.Tensor:
    """The mean image of p(x | z): Bernoulli probabilities, Gaussian means, continuous-Bernoulli means."""
    return distribution.base_dist.mean if isinstance(distribution, Independent) else distribution.mean
