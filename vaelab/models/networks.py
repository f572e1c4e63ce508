"""Networks: the parts a family is put together from, chosen by `--network`.

An encoder network maps images x [*batch, C, H, W] (and a label y, for a family that has one) to
[*batch, out_features], the parameters of q(z | x[, y]); a decoder network maps codes
z [*batch, d] (and y) to [*batch, C, H, W], the parameters of p(x | z[, y]) per pixel. How a
network reads an image is its own business: the MLP flattens it.

A label enters a network's first layer (`ConditionalLinear`): a family passes num_classes > 0 to
have one, 0 for none.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


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


class Dense(nn.Linear):
    """nn.Linear (same parameters, values and initialisation) written as a product and a sum.

    Why: given addmm, torch.compile on a CPU first copies the bias into the product's output and
    then accumulates the product onto it, one more pass over the output; given the product and the
    sum, it adds the bias inside the pointwise kernel that follows (the activation, or the
    log-density after the last layer). That pass was 4-6% of an evaluation's time here, measured
    against the matrix products alone (benchmarks/eval_throughput.py).
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = torch.matmul(inputs, self.weight.t())
        return out if self.bias is None else out + self.bias


ACTIVATIONS = {"relu": ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "gelu": nn.GELU}


class ConditionalLinear(nn.Module):
    """W [inputs, onehot(y)] + b, computed as W_in inputs + onehot(y) W_y + b.

    The label term is a small matmul on the [batch, classes] one-hot, added by broadcasting, so
    a [samples, batch, ...] input never needs a one-hot copy per sample. (Indexing W_y[y] would
    be cheaper, but its backward accumulates with atomics on CPU and breaks reproducibility.)
    With num_classes = 0 it is a Linear layer and takes no label.

    inputs: [..., in_features]; y: int64 with a shape that broadcasts against inputs.shape[:-1].
    """

    def __init__(self, in_features: int, out_features: int, num_classes: int):
        super().__init__()
        self.linear = Dense(in_features, out_features)
        self.class_weight = None
        if num_classes:
            # The same initial scale as a Linear layer over the concatenated [inputs, onehot] vector.
            bound = 1.0 / math.sqrt(in_features + num_classes)
            self.class_weight = nn.Parameter(torch.empty(num_classes, out_features).uniform_(-bound, bound))
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
    """in -> hidden... -> out (a linear head), the first layer also seeing the label if it has classes."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], out_features: int, activation: str,
                 num_classes: int):
        super().__init__()
        widths = (in_features, *hidden)
        self.first = ConditionalLinear(widths[0], widths[1] if hidden else out_features, num_classes)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[1:], widths[2:]):
            layers += [ACTIVATIONS[activation](), Dense(width_in, width_out)]
        if hidden:
            layers += [ACTIVATIONS[activation](), Dense(widths[-1], out_features)]
        self.rest = nn.Sequential(*layers)
        self.description = f"MLP {'-'.join(map(str, hidden)) or 'linear'} {activation}"

    def forward(self, inputs: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.rest(self.first(inputs, y))


class MLPEncoder(MLP):
    """Images [*batch, C, H, W] (and y) -> [*batch, out_features], through an MLP on the flat pixels."""

    def __init__(self, image_shape: tuple[int, int, int], out_features: int, hidden: tuple[int, ...],
                 activation: str, num_classes: int):
        super().__init__(math.prod(image_shape), hidden, out_features, activation, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x.flatten(-3), y)


class MLPDecoder(MLP):
    """Codes [*batch, d] (and y) -> [*batch, C, H, W] per-pixel parameters; the hidden widths mirror the encoder's."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], hidden: tuple[int, ...],
                 activation: str, num_classes: int):
        super().__init__(latent_dim, tuple(reversed(hidden)), math.prod(image_shape), activation, num_classes)
        self.image_shape = tuple(image_shape)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(z, y).unflatten(-1, self.image_shape)


# name -> (encoder constructor, decoder constructor); a new network adds a line here and a choice of --network
NETWORKS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module]]] = {
    "mlp": (MLPEncoder, MLPDecoder),
}


def build_networks(network: str, image_shape: tuple[int, int, int], latent_dim: int, encoder_outputs: int,
                   hidden: tuple[int, ...], activation: str, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) of kind `network`: the encoder gives `encoder_outputs` numbers per image."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    make_encoder, make_decoder = NETWORKS[network]
    return (make_encoder(image_shape, encoder_outputs, hidden, activation, num_classes),
            make_decoder(latent_dim, image_shape, hidden, activation, num_classes))
