"""One pass over the training set, and the validation ELBO after it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm import tqdm

from .. import objectives
from ..distributed import SINGLE, Processes
from ..errors import TrainingDiverged
from ..models import Classifies, Model
from .randomness import RandomStreams
from .step import TrainStep

SYNC_EVERY = 25  # reading the loss back forces a host sync: do it rarely
VALIDATION_SEED = 1234  # validation ELBO draws the same z every epoch, so epochs compare


@dataclass
class DeviceSplit:
    """A split as device tensors: x [n, C, H, W] float32 in [0, 1], y [n] int64.

    labelled [n] bool, for semi-supervised training: which images' labels the model may see (the
    others' y is kept only to measure accuracy); None: every label is seen.
    """

    x: torch.Tensor
    y: torch.Tensor
    binary: bool
    labelled: torch.Tensor | None = None

    @classmethod
    def from_split(cls, split, device: torch.device) -> "DeviceSplit":
        x = torch.from_numpy(split.float_images()).to(device)
        return cls(x=x, y=torch.from_numpy(split.labels).to(device), binary=split.binary)


@dataclass
class EpochState:
    """Where an epoch stands: its order of images, the batches done, and the bound summed so far."""

    order: torch.Tensor  # [n] int64 permutation
    step: int
    bound_sum: torch.Tensor  # [] float64: a float32 sum over an epoch drifts by 1e-4 nats per image


class Stopped(Exception):
    """`should_stop()` turned true between two steps; `state` continues the epoch."""

    def __init__(self, state: EpochState):
        super().__init__("stopped")
        self.state = state


class Batch(NamedTuple):
    """One training step's images: `index` [n] int64 into the split; the labels of its last
    `labelled` images are seen, the others' are not (always 0 < n); `regular`: the epoch's usual
    shape (compiled), False for a short last batch."""

    index: torch.Tensor
    labelled: int
    regular: bool


def batch_plan(order: torch.Tensor, labelled: torch.Tensor | None, batch_size: int) -> list[Batch]:
    """An epoch's steps, images taken in `order`: every image, labelled or not, in exactly one step.

    Every label seen (`labelled` None): consecutive slices of `batch_size`. Semi-supervised
    (`labelled` [n] bool): about n / batch_size steps, each with a fixed number of unlabelled images
    (the last step fewer) and an even share of the labelled ones (with 100 labels in 390 steps,
    one image in every fourth step or so), as Kingma et al. (2014) mixed them. Labelled batches of
    their own, one step in hundreds when labels are few, leave q(y | x) to the unlabelled term:
    with Adam a rare step cannot make up in weight what it lacks in frequency.
    """
    if labelled is None or bool(labelled.all()):
        slices = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        return [Batch(index, len(index), len(index) == batch_size) for index in slices]
    mask = labelled[order]
    known, unknown = order[mask], order[~mask]
    per_step = math.ceil(len(unknown) / math.ceil(len(order) / batch_size))
    steps = math.ceil(len(unknown) / per_step)
    plan = []
    for k in range(steps):
        index = unknown[k * per_step : (k + 1) * per_step]
        share = known[k * len(known) // steps : (k + 1) * len(known) // steps]
        plan.append(Batch(torch.cat([index, share]), len(share), len(index) == per_step))
    return plan


def train_epoch(step: TrainStep, optimizer: torch.optim.Optimizer, data: DeviceSplit, batch_size: int,
                streams: RandomStreams, state: EpochState | None = None,
                should_stop: Callable[[], bool] = lambda: False, label: str = "epoch",
                progress: bool = False, kl_weight: float = 1.0) -> tuple[float, int]:
    """One pass over `data` in the `order` stream's random order: (mean bound per image, steps taken).

    kl_weight < 1 is KL warm-up (see `step.training_bound`); the mean bound is the true one.
    Steps follow `batch_plan`: the step sees the labels of a batch's labelled images only.
    `state` continues an interrupted epoch. If `should_stop()` turns true, the epoch stops between
    two steps and raises Stopped with the state to continue from. A non-finite loss raises
    TrainingDiverged naming the step (`label` names the epoch in messages and the progress bar).
    """
    step.model.train()
    n = data.x.shape[0]
    if state is None:
        state = EpochState(torch.randperm(n, generator=streams.order, device=data.x.device), 0,
                           torch.zeros((), dtype=torch.float64, device=data.x.device))
    order, bound_sum, steps = state.order, state.bound_sum, state.step
    plan = batch_plan(order, data.labelled, batch_size)
    seen = sum(len(batch.index) for batch in plan[:steps])
    first_bad_step = torch.full((), -1, dtype=torch.long, device=data.x.device)  # tracked without a host sync
    with tqdm(total=n, initial=seen, desc=label, unit="img", leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
        for index, labelled, regular in plan[steps:]:
            if should_stop():
                raise Stopped(EpochState(order, steps, bound_sum))
            # index_select: a third of the time of data.x[index] on a CPU
            y = data.y.index_select(0, index[len(index) - labelled :]) if labelled else None
            loss, batch_bound = step(data.x.index_select(0, index), y, streams, kl_weight, regular)
            optimizer.step()
            bound_sum += batch_bound
            steps += 1
            seen += len(index)
            # a non-finite gradient makes the parameters, and so the next loss, non-finite too
            first_bad_step = torch.where(torch.isfinite(loss) | (first_bad_step >= 0), first_bad_step,
                                         first_bad_step.new_full((), steps))
            if steps % SYNC_EVERY == 0 or steps == len(plan):
                running = bound_sum.item() / seen
                if not math.isfinite(running):
                    raise TrainingDiverged(f"the loss became non-finite in {label} at step "
                                           f"{int(first_bad_step.item())} of the epoch")
                bar.update(seen - bar.n)
                bar.set_postfix_str(f"bound {running:.2f}")
    return bound_sum.item() / n, steps


@torch.no_grad()
def validate(model: Model, data: DeviceSplit, batch_size: int = 1000, seed: int = VALIDATION_SEED,
             processes: Processes = SINGLE) -> dict:
    """ELBO and its terms on a fixed split with a fixed seed: mean nats per image; for a family with a
    classifier also the accuracy of q(y | x) (a fraction).

    The z of every chunk of batch_size images come from one generator, in order (the same numbers
    as ever). In a group of processes each process draws them all (10,000 x d numbers) and
    computes the ELBO of its share of the chunks; the sums they reduce give the one-process
    figures (to float64 summation order).
    """
    model.eval()
    device = data.x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    chunks = range(math.ceil(data.x.shape[0] / batch_size))
    mine = chunks[processes.rows(len(chunks))]
    for chunk in chunks:
        x, y = data.x[chunk * batch_size : (chunk + 1) * batch_size], data.y[chunk * batch_size : (chunk + 1) * batch_size]
        noise = objectives.standard_noise(model, x.shape[0], 1, generator, device, x.dtype)
        if chunk not in mine:
            continue
        terms = objectives.elbo(model, x, y, samples=1, noise=noise)
        row = [terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()]
        if isinstance(model, Classifies):  # M2: how often q(y | x) names the right class
            row.append(objectives.confusion_matrix(model, x, y, batch_size).trace())
        sums[: len(row)] += torch.stack(row).double()
    elbo, recon, kl, right = (processes.sum(sums) / data.x.shape[0]).tolist()
    result = {"elbo": elbo, "recon": recon, "kl": kl}
    if isinstance(model, Classifies):
        result["accuracy"] = right
    return result
