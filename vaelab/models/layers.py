"""Layers the networks share: the activations, a dense layer, and the ways a class label enters.

A label never enters as a one-hot copy of an image: a dense layer adds a learned row per class
(`ConditionalLinear`), a convolution a learned bias per class and channel (`ClassBias`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

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


class Network(nn.Module):
    """A network whose matrix products and convolutions may run in reduced precision.

    `precision` (None: the parameters' own dtype) is set for a stretch of work by
    `reduced_precision`; the training step sets it to bfloat16 for `--precision bf16`. The
    products then run under torch.autocast, with the parameters and the optimizer's state kept in
    float32, and what the network returns is float32 again: the log-likelihood, the KL terms, the
    flows and every reduction over pixels or draws stay in float32. A subclass writes `compute`
    (its forward pass); a network whose parts are called apart (the ADGM's shared first layer)
    wraps each part in `products` and `returned`.
    """

    precision: torch.dtype | None = None

    def products(self, reference: torch.Tensor):
        """The context its products run in: autocast to `precision` on `reference`'s device, or none."""
        return torch.autocast(reference.device.type, dtype=self.precision or torch.bfloat16,
                              enabled=self.precision is not None)

    def returned(self, output: torch.Tensor) -> torch.Tensor:
        """`output` as the network returns it: float32 again after reduced-precision products."""
        return output if self.precision is None else output.float()

    def compute(self, *inputs, **named) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, first: torch.Tensor, *inputs, **named) -> torch.Tensor:
        with self.products(first):
            output = self.compute(first, *inputs, **named)
        return self.returned(output)


@contextmanager
def reduced_precision(module: nn.Module, precision: torch.dtype | None) -> Iterator[None]:
    """Within it, every `Network` inside `module` runs its products in `precision` (None: as its
    parameters); on exit each is put back as it was."""
    networks = [m for m in module.modules() if isinstance(m, Network)]
    before = [network.precision for network in networks]
    for network in networks:
        network.precision = precision
    try:
        yield
    finally:
        for network, value in zip(networks, before):
            network.precision = value


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


def flat_labels(y: torch.Tensor | None, batch_shape: torch.Size) -> torch.Tensor | None:
    """Labels whose shape is a suffix of `batch_shape`, broadcast to it and flattened: [prod(batch_shape)]."""
    return None if y is None else y.expand(batch_shape).reshape(-1)


class ClassBias(nn.Module):
    """A learned bias per class and channel for feature maps [N, channels, H, W]; nothing without classes.

    Equal to a 1x1 convolution over a one-hot label map, at the cost of a [N, classes] x [classes,
    channels] product. Starts at zero, so a fresh network does not depend on the label.
    """

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, channels)) if num_classes else None

    def forward(self, features: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.weight is None:
            return features
        if y is None:
            raise ValueError("this model is class-conditional: pass the labels y")
        bias = F.one_hot(y, self.weight.shape[0]).to(self.weight.dtype) @ self.weight  # [N, channels]
        return features + bias[:, :, None, None]
