"""One pass over the training set, and the validation ELBO after it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import inference
from ..errors import TrainingDiverged
from ..inference.batches import NamedSums, shared_batches
from ..models import Classifies, Model, read
from ..runtime.progress import progress_bar
from ..runtime.devices import DeviceSplit
from ..runtime.precision import in_float32
from ..runtime.processes import SINGLE, Processes
from .randomness import RandomStreams
from .step import TrainStep

SYNC_EVERY = 25  # reading the loss back forces a host sync: do it rarely
VALIDATION_SEED = 1234  # validation ELBO draws the same z every epoch, so epochs compare


@dataclass
class EpochState:
    """Where an epoch stands: its order of images, the batches done, and the step's sums (`TrainStep`)
    added up so far: {"bound": [], "recon": [], ...} float64 (a float32 sum over an epoch drifts by
    1e-4 nats per image). A state saved before the parts were summed holds the bound alone."""

    order: torch.Tensor  # [n] int64 permutation
    step: int
    sums: dict[str, torch.Tensor]


class Stopped(Exception):
    """`should_stop()` turned true between two steps; `state` continues the epoch."""

    def __init__(self, state: EpochState):
        super().__init__("stopped")
        self.state = state


class Batch(NamedTuple):
    """One training step's images: `index` [n] int64 into the split; the labels of its last
    `labelled` images are seen, the others' are not (always 0 < n); `full_size`: the epoch's usual
    shape (compiled), False for a short last batch."""

    index: torch.Tensor
    labelled: int
    full_size: bool


def batch_plan(order: torch.Tensor, labelled: torch.Tensor | None, batch_size: int,
               labelled_batch: int = 0) -> list[Batch]:
    """An epoch's steps, images taken in `order`.

    Every label seen (`labelled` None): consecutive slices of `batch_size`, every image once.
    Semi-supervised (`labelled` [n] bool), labelled_batch > 0: every step holds `batch_size`
    unlabelled images (the last step fewer), each unlabelled image in exactly one step, and after
    them `labelled_batch` labelled ones, taken in turn from the labelled images in `order`,
    cycling (with 100 labels and a labelled batch of 100, all of them in every step), as the
    published M2 and auxiliary-variable models train. labelled_batch = 0: the labelled images
    spread over the epoch, each in exactly one step (an even share of them per step, about n /
    batch_size steps): the plan of runs made before the labelled batch existed.
    """
    if labelled is None or bool(labelled.all()):
        slices = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        return [Batch(index, len(index), len(index) == batch_size) for index in slices]
    mask = labelled[order]
    labelled_order, unlabelled_order = order[mask], order[~mask]
    if labelled_batch:
        steps = math.ceil(len(unlabelled_order) / batch_size)
        positions = torch.arange(steps * labelled_batch, device=order.device) % len(labelled_order)
        cycled = labelled_order[positions].view(steps, labelled_batch)
        return [Batch(torch.cat([unlabelled_order[k * batch_size : (k + 1) * batch_size], cycled[k]]), labelled_batch,
                      k < steps - 1 or len(unlabelled_order) % batch_size == 0) for k in range(steps)]
    per_step = math.ceil(len(unlabelled_order) / math.ceil(len(order) / batch_size))
    steps = math.ceil(len(unlabelled_order) / per_step)
    plan = []
    for k in range(steps):
        index = unlabelled_order[k * per_step : (k + 1) * per_step]
        share = labelled_order[k * len(labelled_order) // steps : (k + 1) * len(labelled_order) // steps]
        plan.append(Batch(torch.cat([index, share]), len(share), len(index) == per_step))
    return plan


def plan_images(plan: list[Batch]) -> int:
    """The images an epoch's steps hold, a labelled image counted once per step it is in."""
    return sum(len(batch.index) for batch in plan)


def train_epoch(step: TrainStep, optimizer: torch.optim.Optimizer, data: DeviceSplit, batch_size: int,
                streams: RandomStreams, state: EpochState | None = None,
                should_stop: Callable[[], bool] = lambda: False, label: str = "epoch",
                progress: bool = False, kl_weight: float = 1.0, labelled_batch: int = 0,
                between_steps: Callable[[], None] = lambda: None) -> tuple[dict[str, float], int]:
    """One pass over `data` in the `order` stream's random order: (the mean per image of the epoch's
    steps of the bound and of each of its parts, {"bound": ..., "recon": ..., "kl": ...}; steps taken).

    kl_weight weighs the KL terms in what is maximised (warm-up, β; see `Model.objective`); the
    mean bound is the true one.
    Steps follow `batch_plan` (with `labelled_batch`): the step sees the labels of a batch's
    labelled images only. `between_steps` is called before every step (the command line's CPU
    sharing looks at the machine then: `vaelab.runtime.cpu_share.CpuShare.update`).
    `state` continues an interrupted epoch. If `should_stop()` turns true, the epoch stops between
    two steps and raises Stopped with the state to continue from. A non-finite loss raises
    TrainingDiverged naming the step (`label` names the epoch in messages and the progress bar).
    """
    step.model.train()
    n = data.x.shape[0]
    if state is None:
        state = EpochState(torch.randperm(n, generator=streams.order, device=data.x.device), 0, {})
    order, sums, steps = state.order, dict(state.sums), state.step
    plan = batch_plan(order, data.labelled, batch_size, labelled_batch)
    total = plan_images(plan)
    seen = plan_images(plan[:steps])
    first_bad_step = torch.full((), -1, dtype=torch.long, device=data.x.device)  # tracked without a host sync
    with progress_bar()(total=total, initial=seen, desc=label, unit="img", leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
        for index, labelled, full_size in plan[steps:]:
            if should_stop():
                raise Stopped(EpochState(order, steps, sums))
            between_steps()
            # index_select: a third of the time of data.x[index] on a CPU
            y = data.y.index_select(0, index[len(index) - labelled :]) if labelled else None
            x = data.x.index_select(0, index)
            gray = x if data.seen is data.x else data.seen_rows(index)  # gray x, binarised in the step: no copy
            step_sums = step(x, y, streams, kl_weight, full_size, seen=gray)
            optimizer.step()
            loss = step_sums.pop("loss")
            sums = _added(sums, step_sums)
            steps += 1
            seen += len(index)
            # a non-finite gradient makes the parameters, and so the next loss, non-finite too
            first_bad_step = torch.where(torch.isfinite(loss) | (first_bad_step >= 0), first_bad_step,
                                         first_bad_step.new_full((), steps))
            if steps % SYNC_EVERY == 0 or steps == len(plan):
                running = sums["bound"].item() / seen
                if not math.isfinite(running):
                    raise TrainingDiverged(f"the loss became non-finite in {label} at step "
                                           f"{int(first_bad_step.item())} of the epoch")
                bar.update(seen - bar.n)
                bar.set_postfix_str(f"bound {running:.2f}")
    return {name: value.item() / total for name, value in sums.items()}, steps


def _added(sums: dict[str, torch.Tensor], step: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`sums` with a step's sums added, in float64; the first step's start them. An epoch resumed
    from a state that holds the bound alone (saved before the parts were summed) sums the bound alone."""
    if not sums:
        return {name: value.double() for name, value in step.items()}
    return {name: total + step[name] for name, total in sums.items()}


@torch.no_grad()
@inference.fixing_prior
@in_float32
def validate(model: Model, data: DeviceSplit, batch_size: int = 1000, seed: int = VALIDATION_SEED,
             processes: Processes = SINGLE) -> dict:
    """The ELBO on a fixed split with a fixed seed, one draw of the latents per image, and its parts:
    {"elbo": ..., "recon": ..., one KL per latent ...}, mean nats per image; for a family with a
    classifier also the accuracy of q(y | x) (a fraction).

    The noise of every chunk of batch_size images comes from one generator, in order (the same
    numbers every epoch). q reads `data.seen` where the run gives it gray levels (`models.read`). In a group of processes each process draws them all (10,000 x d numbers)
    and computes the ELBO of its share of the chunks; the sums they reduce give the one-process
    figures (to float64 summation order).
    """
    model.eval()
    device = data.x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    sums = NamedSums()
    mine = dict(shared_batches(data.x.shape[0], batch_size, processes))  # a process without a chunk: an empty one
    for chunk in range(math.ceil(data.x.shape[0] / batch_size)):
        images = data.x[chunk * batch_size : (chunk + 1) * batch_size].shape[0]
        noise = inference.draw_noise(model, 1, images, generator, device, data.x.dtype)
        if chunk in mine:
            # a process without images of its own computes the first one and adds none of it: every
            # process adds the same names, and a family's densities need not take an empty batch
            empty = mine[chunk].stop == mine[chunk].start
            rows = slice(0, 1) if empty else mine[chunk]
            x, y, seen = data.x[rows], data.y[rows], data.seen_rows(rows)
            terms = inference.elbo(model, x, y, noise[:, : x.shape[0]], seen=seen)
            kept = slice(0, 0) if empty else slice(None)
            sums.add({"elbo": terms.bound[kept], **{name: value[kept] for name, value in terms.parts.items()}})
            if isinstance(model, Classifies):  # M2: how often q(y | x) names the right class
                right = inference.confusion_matrix(model, read(x, seen), y, batch_size).trace()
                sums.add({"accuracy": right * 0 if empty else right})
    return sums.means(data.x.shape[0], processes)
