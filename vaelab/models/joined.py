"""`Joined`: the MLP of the auxiliary-variable models (ADGM, SDGM) whose first layer takes its inputs
apart, so that an image's share of it is computed once for all the draws and classes that reuse it."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import ACTIVATIONS, ConditionalLinear, Dense, Network


class Joined(Network):
    """An MLP on several vectors and perhaps a label: W_0 u_0 + onehot(y) W_y + b + Σ_i W_i u_i, then
    the hidden layers, then a linear head; the same function as a dense first layer on their
    concatenation, initialised like one.

    `head(u_0, y)` is u_0's and y's share of the first layer and `finish(head, u_1, ...)` the rest,
    so a u_0 shared by many rows (an image, for every draw and class) is multiplied once; the
    shares broadcast against each other. inputs: the widths of u_0, u_1, ...; u_i [..., inputs[i]].
    """

    def __init__(self, inputs: tuple[int, ...], hidden: tuple[int, ...], out_features: int, activation: str,
                 num_classes: int = 0):
        super().__init__()
        if not hidden:
            raise ValueError("the auxiliary-variable model needs at least one hidden layer")
        self.first = ConditionalLinear(inputs[0], hidden[0], num_classes)
        self.others = nn.ModuleList(Dense(width, hidden[0], bias=False) for width in inputs[1:])
        bound = 1.0 / math.sqrt(sum(inputs) + num_classes)
        for parameter in self.parameters():  # every share as a part of one dense layer over the concatenation
            nn.init.uniform_(parameter, -bound, bound)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(hidden, (*hidden[1:], out_features)):
            layers += [ACTIVATIONS[activation](), Dense(width_in, width_out)]
        self.rest = nn.Sequential(*layers)
        self.description = f"MLP {'-'.join(map(str, hidden))} {activation}"

    def head(self, first: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        with self.products(first):
            return self.returned(self.first(first, y))

    def finish(self, head: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        with self.products(head):
            total = head
            for layer, value in zip(self.others, others):
                total = total + layer(value)
            return self.returned(self.rest(total))

    def compute(self, first: torch.Tensor, *others: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.finish(self.head(first, y), *others)
