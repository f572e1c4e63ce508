"""One training step: the bound with its parts, the gradients, the update.

`train_step` is the step, every line of it, in plain PyTorch: binarise the batch, draw the noise,
call the family's `objective`, backpropagate, clip, step. It is the reference: what the trainer
runs is `TrainStep`, the same step made fast, which tests/test_step.py keeps equal to it (bit for
bit when run eagerly in one process, to float rounding when compiled):
- compiled: the loss and its gradients as one function (torch.func), through torch.compile (if
  compilation fails it says so once and runs eagerly); eagerly, ordinary autograd, which is faster
  than torch.func's transforms without a compiler;
- in a group of processes, each computes its share of the step's images; the gradients are summed
  by DistributedDataParallel (eagerly) or by one all_reduce (compiled).
A step's sums ({"loss", "bound", one per part of the bound}, nats summed over its images) are what
the epoch adds up into `metrics.jsonl`'s train_elbo, train_recon, train_kl, ...
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import inference
from ..models import Bound, Model, Noise, Terms, prior_fixed
from ..models.layers import reduced_precision
from ..runtime.compilation import CompiledOrEager, step_compile_mode
from ..runtime.processes import SINGLE, Processes, ProcessLost, lost_message
from .randomness import RandomStreams


def train_step(model: Model, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor | None,
               streams: RandomStreams, bound: Bound, samples: int = 1, kl_weight: float = 1.0,
               dynamic: bool = True, clip_grad_norm: float | None = None,
               labelled_apart: bool = False, seen: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The reference training step on images x [batch, C, H, W] in [0, 1] whose last m come with
    their labels y [m] (None: no label): the step's sums, {"loss": [], "bound": [], one per part},
    nats summed over the batch (the loss: nats per image, `step_loss`). `TrainStep` is this, fast.
    bound: `inference.elbo` or `inference.iw_bound` with `samples` draws per image. seen: what the
    networks that read an image are given (x's gray levels, `--encoder-input grayscale`), or None: x
    as the likelihood scores it, binarised where `dynamic` (else as given: with gray levels, a
    Bernoulli scores their mean over the binarisations, `--binarize expected`)."""
    if dynamic:  # x ~ Bernoulli(gray level), fresh every step, from the run's pixel stream
        x = binarize(x, binarization_bits(x, streams.pixels))
    labelled = 0 if y is None else y.shape[0]
    noise = step_noise(model, x.shape[0], labelled, samples, streams.noise, x.device, x.dtype)
    scale = step_scale(x.shape[0], labelled, labelled_apart, x.dtype, x.device)
    weight = torch.full((), kl_weight, dtype=x.dtype, device=x.device)
    with prior_fixed(model):  # the VampPrior's pseudo-inputs encoded once per step
        terms = model.objective(x, y, noise, bound, weight, seen=seen)
    loss = step_loss(terms, labelled, scale)
    optimizer.zero_grad(set_to_none=False)  # zeros, so that a parameter this step leaves unused still steps
    loss.backward()
    if clip_grad_norm is not None:  # the total (Euclidean) norm of all the gradients, at most this
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip_grad_norm,
                                       foreach=True)
    optimizer.step()
    return {"loss": loss.detach(), **step_sums(terms)}


def binarization_bits(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random bits for binarising the images x once: [ceil(x.numel() / 2)] int64, uniform on [0, 2^63).

    Each 64-bit number gives two pixels their uniforms (see `binarize`), so this asks the generator
    for half as many numbers as torch.rand(x.shape) would: 0.2 ms instead of 0.37 ms for a batch
    of 128 images on a 2-core CPU, about 2% of a training step.
    """
    return torch.empty((x.numel() + 1) // 2, dtype=torch.int64, device=x.device).random_(generator=generator)


def binarize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """One Bernoulli(gray level) draw per pixel: x [...] in [0, 1] -> 0/1 of x's shape and dtype.

    `bits` are read as 32-bit words, two per 64-bit number; pixel i is 1 when u_i < x_i, where
    u_i = k / 2^24 takes the low 24 bits of word i (bits 0-23 or 32-55 of a number, both uniform).
    These are the values, and the distribution, that torch.rand gives in float32, so
    P(pixel = 1) = x to within 2^-24. Either byte order gives the same distribution.
    """
    fields = bits.view(torch.int32)[: x.numel()] & ((1 << 24) - 1)
    uniforms = fields.view(x.shape).to(x.dtype) * 2.0**-24
    return (uniforms < x).to(x.dtype)


def laid_out_like(gradient: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
    """`gradient` with `parameter`'s strides (a copy only where they differ).

    Why: torch's fused Adam on a CPU (torch 2.13) reads a gradient's memory in its parameter's
    order without checking the strides, so the channels-last gradient that a convolution's weight
    gets from channels-last feature maps would be applied to the wrong elements, silently (conv
    and resnet then train far worse; pytorch/pytorch#106951 reports the same mismatch as an error
    on CUDA). A gradient that autograd accumulates into `.grad` is laid out so
    already; one that the step hands over itself is not.
    """
    if gradient.stride() == parameter.stride():
        return gradient
    return torch.empty_strided(parameter.shape, parameter.stride(), dtype=gradient.dtype,
                               device=gradient.device).copy_(gradient)


class Loss(torch.nn.Module):
    """The training loss as a module (parameters "model.*"), so torch.func can differentiate it."""

    def __init__(self, model: Model, objective: str):
        super().__init__()
        self.model, self.bound = model, inference.BOUNDS[objective]

    def forward(self, x, y, bits, noise: Noise, kl_weight, scale, seen=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the step's loss [] (`step_loss`), the step's sums (`step_sums`)) for images x [batch, C, H, W]
        and the labels y [m] of the last m of them, or None: the family's `objective`
        (`Model.objective`) with the --objective bound; `bits`: the binarisation's, or None; `seen`:
        what q reads, or None (x)."""
        if bits is not None:  # dynamic binarisation: x ~ Bernoulli(gray level), fresh every time
            x = binarize(x, bits)
        with prior_fixed(self.model):  # the VampPrior's pseudo-inputs encoded once per step
            terms = self.model.objective(x, y, noise, self.bound, kl_weight, seen=seen)
        return step_loss(terms, 0 if y is None else y.shape[0], scale), step_sums(terms)


def step_loss(terms: Terms, labelled: int, scale: torch.Tensor) -> torch.Tensor:
    """-(what is maximised, weighted by `scale`, summed over the batch): [] from Terms [batch] whose
    last `labelled` rows are the labelled images (a family keeps the rows in x's order).

    scale [2]: the weights of an unlabelled and of a labelled image, the same for the whole step
    on every process, so that the processes' losses add up to the step's: 1 / the step's images
    for both (the mean over the step), or 1 / its unlabelled and 1 / its labelled images (the
    mean of each kind, added: `step_scale`)."""
    unlabelled = terms.maximised.shape[0] - labelled
    return -(terms.maximised[:unlabelled].sum() * scale[0] + terms.maximised[unlabelled:].sum() * scale[1])


def step_sums(terms: Terms) -> dict[str, torch.Tensor]:
    """{"bound": the bound summed over the batch [], and each of its parts ("recon", "kl", ...)
    summed over the batch []}: nats, no gradient."""
    return {"bound": terms.bound.detach().sum(), **{name: value.detach().sum() for name, value in terms.parts.items()}}


def step_scale(images: int, labelled: int, labelled_apart: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`Loss`'s scale [2] for a step of `images` images whose last `labelled` come with their label:
    with `labelled_apart`, the mean of the unlabelled images' terms plus the mean of the labelled ones' (the
    labelled-batch plan, where alpha weighs log q(y | x) on the labelled mean); else the mean over
    all the step's images."""
    unlabelled = images - labelled
    scale = torch.full((2,), 1 / images, dtype=dtype, device=device)
    if labelled_apart and unlabelled and labelled:  # filled on the device: torch.tensor([...]) would copy from the host
        scale[0].fill_(1 / unlabelled)
        scale[1].fill_(1 / labelled)
    return scale


def step_noise(model: Model, images: int, labelled: int, samples: int, generator: torch.Generator,
               device: torch.device, dtype: torch.dtype) -> Noise:
    """The base noise of a step of `images` images whose last `labelled` come with their label:
    the unlabelled images' first, then the labelled ones' (`Noise`), from `generator` in that order."""
    unlabelled = images - labelled
    draw = inference.draw_noise
    return Noise(draw(model, samples, unlabelled, generator, device, dtype, labelled=False) if unlabelled else None,
                 draw(model, samples, labelled, generator, device, dtype) if labelled else None)


def process_share(processes: Processes, x: torch.Tensor, y: torch.Tensor | None, noise: Noise,
                  seen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, Noise, torch.Tensor | None]:
    """This process's rows of a whole step: (x, y, noise, seen) as `Model.objective` takes them.

    The step's unlabelled images (x's first) and its labelled ones (the last y.shape[0]) are
    shared out apart, each in rank order (`Processes.rows`), with their noise (image by image:
    dimension 1 of each noise tensor).
    """
    labelled = 0 if y is None else y.shape[0]
    unlabelled = x.shape[0] - labelled
    mine_unlabelled, mine_labelled = processes.rows(unlabelled), processes.rows(labelled)
    share = Noise(None if noise.unlabelled is None else noise.unlabelled[:, mine_unlabelled],
                  None if noise.labelled is None else noise.labelled[:, mine_labelled])
    def rows(images):
        return torch.cat([images[:unlabelled][mine_unlabelled], images[unlabelled:][mine_labelled]])

    return rows(x), None if y is None else y[mine_labelled], share, None if seen is None else rows(seen)


class TrainStep:
    """`train_step` made fast, up to `optimizer.step()`: called with a batch (x [batch, C, H, W],
    y [m]) and the run's random streams, it returns the step's sums ({"loss": [], "bound": [], one
    per part}, as `train_step`'s) and leaves d loss / d parameter in every trainable parameter's
    `.grad`, ready for `optimizer.step()`. Loss: -(mean of what is maximised), nats per image: over
    all the step's images, or with `labelled_apart` (the labelled-batch plan) over its unlabelled and
    its labelled images apart, added (`step_scale`).

    It draws the binarisation bits (`pixels` stream) and the noise (`noise` stream) before calling
    `loss_and_gradients`, so the compiled and the eager function consume identical random numbers
    and agree to float rounding. Only batches of `batch_size` go through the compiled function
    (one static shape, one compilation); an epoch's short last batch runs it eagerly.

    precision: the dtype of the networks' products (`models.layers.reduced_precision`; bfloat16 for
    --precision bf16), None for their own.

    In a group of processes (`vaelab.runtime.processes`) every process is called with the whole step,
    draws all its random numbers, and computes on its share (`process_share`); the loss, the bound
    and the gradients returned are the whole step's, the same as one process computes. Eagerly
    the gradients are summed by DistributedDataParallel (its buckets overlap the backward pass);
    the compiled function (torch.func, which DDP's autograd hooks do not see) sums them with one
    all_reduce of all of them at once.
    """

    def __init__(self, model: Model, objective: str, samples: int, batch_size: int, dynamic: bool, compile: bool,
                 processes: Processes = SINGLE, clip_grad_norm: float | None = None, labelled_apart: bool = False,
                 precision: torch.dtype | None = None):
        self.model, self.samples, self.batch_size, self.dynamic = model, samples, batch_size, dynamic
        self.precision = precision
        self.processes, self.clip_grad_norm, self.labelled_apart = processes, clip_grad_norm, labelled_apart
        self.loss = Loss(model, objective)
        self.parameters = [(name, p) for name, p in self.loss.named_parameters() if p.requires_grad]
        device = next(model.parameters()).device
        self.compiled = CompiledOrEager(self.loss_and_gradients, "the training step", enabled=compile, dynamic=False,
                                        eager=self.eager_loss_and_gradients, mode=step_compile_mode(device))
        self.ddp = None
        if processes.count > 1:
            # gradients averaged over processes: the loss is scaled by count to make that a sum
            self.ddp = DistributedDataParallel(self.loss, device_ids=[device] if device.type == "cuda" else None,
                                               forward_sync_buffers=False)

    def loss_and_gradients(self, x, y, bits, noise, kl_weight, scale, seen=None):
        """({name: d loss / d parameter}, (loss [], the step's sums)): the whole step's math.

        torch.func computes the loss and its gradients as one function, so under torch.compile they
        are one generated program with no autograd graph to record and replay.
        """
        parameters = {name: p.detach() for name, p in self.parameters}

        def loss(values):
            return torch.func.functional_call(self.loss, values, (x, y, bits, noise, kl_weight, scale, seen))

        return torch.func.grad_and_value(loss, has_aux=True)(parameters)

    def eager_loss_and_gradients(self, x, y, bits, noise, kl_weight, scale, seen=None):
        """`loss_and_gradients` by ordinary autograd: the same loss and gradients to float rounding.

        Run where nothing is compiled (`--compile off`, a failed compilation, an epoch's short last
        batch): torch.func's transforms cost dispatch time on every operation when run eagerly,
        20 ms against 12 ms for a CVAE step at batch 128 on a 2-core CPU.
        """
        with torch.enable_grad():
            loss, sums = self.loss(x, y, bits, noise, kl_weight, scale, seen)
            gradients = torch.autograd.grad(loss, [p for _, p in self.parameters], allow_unused=True,
                                            materialize_grads=True)
        return {name: g for (name, _), g in zip(self.parameters, gradients)}, (loss.detach(), sums)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, streams: RandomStreams,
                 kl_weight: float = 1.0, full_size: bool | None = None,
                 seen: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """y [m]: the labels of x's last m images; a family with a classifier sums out the others'.
        seen: what the networks that read an image are given (x's gray levels), or None: x.

        full_size: whether the batch has the epoch's usual shape and goes through the compiled function
        (default: x holds batch_size images); each new shape compiles once. With clip_grad_norm the
        gradients left in `.grad` are scaled down to that total (Euclidean) norm where it is larger:
        the whole step's gradients, the same on every process, with no host sync.
        """
        # float32 (the default) walks no modules: this is the hot path
        with nullcontext() if self.precision is None else reduced_precision(self.model, self.precision):
            loss, sums = self._gradients(x, y, streams, kl_weight, full_size, seen)
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.parameters], self.clip_grad_norm, foreach=True)
        return {"loss": loss, **sums}

    def _gradients(self, x, y, streams, kl_weight, full_size, seen) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's loss and sums, its gradients left in `.grad` (see `__call__`)."""
        bits = binarization_bits(x, streams.pixels) if self.dynamic else None
        noise = step_noise(self.model, x.shape[0], 0 if y is None else y.shape[0], self.samples, streams.noise,
                           x.device, x.dtype)
        weight = torch.full((), kl_weight, dtype=x.dtype, device=x.device)  # a tensor: no recompilation per value
        scale = step_scale(x.shape[0], 0 if y is None else y.shape[0], self.labelled_apart, x.dtype, x.device)
        full_size = x.shape[0] == self.batch_size if full_size is None else full_size
        if self.processes.count > 1:
            if bits is not None:
                x, bits = binarize(x, bits), None
            x, y, noise, seen = process_share(self.processes, x, y, noise, seen)
            if not (full_size and self.compiled.active):
                return self._data_parallel(x, y, noise, weight, scale, seen)
        run = self.compiled if full_size else self.eager_loss_and_gradients
        gradients, (loss, sums) = run(x, y, bits, noise, weight, scale, seen)
        if self.processes.count > 1:  # one all_reduce for the gradients, the loss and the sums
            flat = self.processes.sum(torch.cat([gradients[name].reshape(-1) for name, _ in self.parameters]
                                                + [loss.reshape(1)] + [value.reshape(1) for value in sums.values()]))
            loss, sums = flat[-1 - len(sums)], dict(zip(sums, flat[len(flat) - len(sums):]))
            pieces = flat[: -1 - len(sums)].split([p.numel() for _, p in self.parameters])
            gradients = {name: piece.view_as(p) for (name, p), piece in zip(self.parameters, pieces)}
        for name, parameter in self.parameters:
            parameter.grad = laid_out_like(gradients[name], parameter)
        return loss, sums

    def _data_parallel(self, x, y, noise, weight, scale, seen) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step on this process's share through DistributedDataParallel: the whole step's (loss, sums)."""
        for _, parameter in self.parameters:
            parameter.grad = None
        count = self.processes.count
        with torch.enable_grad():
            loss, sums = self.ddp(x, y, None, noise, weight, scale * count, seen)
            if x.shape[0] == 0:  # an empty share still takes part in every parameter's all_reduce
                loss = loss + sum(p.sum() for _, p in self.parameters) * 0
            try:  # the backward pass is where DDP's all_reduces run (gloo reports a lost peer as a RuntimeError)
                loss.backward()
            except RuntimeError as exc:
                raise ProcessLost(lost_message(exc)) from None
        totals = self.processes.sum(torch.stack([loss.detach() / count, *sums.values()]))
        return totals[0], dict(zip(sums, totals[1:]))
