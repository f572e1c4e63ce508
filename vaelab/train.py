"""The training loop: SGVB (or IWAE) with Adam, validation every epoch, checkpoints, resume.

The data lives on the device as tensors; each epoch draws a permutation and (for dynamic
binarisation) fresh pixels from one explicit torch.Generator, whose state is checkpointed with the
model and the optimizer, so a resumed run repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Independent, Normal
from tqdm import tqdm

from . import objectives
from .config import TrainConfig, config_from_dict
from .data import Split, load_raw, make_splits
from .errors import RunError, TrainingDiverged, TrainingInterrupted, VaelabError
from .fast import CompiledOrEager, make_adam, use_compile
from .models import VAE, build_model, decoder_mean
from .runs import RunDir, load_checkpoint, read_json, read_metrics, save_checkpoint, write_json, write_metrics

Log = Callable[[str], None]
GRID_COLUMNS = 8  # samples per class in the sample grids saved during training
VALIDATION_SEED = 1234  # validation ELBO draws the same z every epoch, so epochs compare


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


@dataclass
class DeviceSplit:
    """A split as device tensors: x [n, 784] float32 in [0, 1], y [n] int64."""

    x: torch.Tensor
    y: torch.Tensor
    binary: bool

    @classmethod
    def from_split(cls, split: Split, device: torch.device) -> "DeviceSplit":
        x = torch.from_numpy(split.float_images()).to(device)
        return cls(x=x, y=torch.from_numpy(split.labels).to(device), binary=split.binary)


def labels_for(model: VAE, y: torch.Tensor) -> torch.Tensor | None:
    return y if model.conditional else None


def training_loss(model: VAE, x: torch.Tensor, y: torch.Tensor | None, config: TrainConfig,
                  generator: torch.Generator | None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The bound per image being maximised, [batch] nats (ELBO or IW bound).

    `noise` ([samples, batch, d] standard normal) gives the reparameterisation draws; without it
    they come from `generator`.
    """
    if config.objective == "iwae":
        return objectives.iw_bound(model, x, y, config.samples, generator, noise=noise)
    return objectives.elbo(model, x, y, config.samples, generator, noise=noise).elbo


COMPILE_FROM_STEPS = 4000  # training steps from which compiling the step pays for its start-up


def binarization_bits(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random bits for binarising the images x once: [ceil(x.numel() / 2)] int64, uniform on [0, 2^63).

    Each 64-bit number gives two pixels their uniforms (see `binarize`), so this asks the generator
    for half as many numbers as torch.rand(x.shape) would: 0.2 ms instead of 0.37 ms for a batch
    of 128 images on a 2-core CPU, about 2% of a training step.
    """
    return torch.empty((x.numel() + 1) // 2, dtype=torch.int64, device=x.device).random_(generator=generator)


def binarize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """One Bernoulli(gray level) draw per pixel: x [..., 784] in [0, 1] -> 0/1 of x's shape and dtype.

    `bits` are read as 32-bit words, two per 64-bit number; pixel i is 1 when u_i < x_i, where
    u_i = k / 2^24 takes the low 24 bits of word i (bits 0-23 or 32-55 of a number, both uniform).
    These are the values, and the distribution, that torch.rand gives in float32, so
    P(pixel = 1) = x to within 2^-24. Either byte order gives the same distribution.
    """
    fields = bits.view(torch.int32)[: x.numel()] & ((1 << 24) - 1)
    uniforms = fields.view(x.shape).to(x.dtype) * 2.0**-24
    return (uniforms < x).to(x.dtype)


class TrainStep:
    """The loss of one training step and its gradients, eager or through torch.compile, same draws.

    Called with a batch of images x [batch, 784] (grayscale in [0, 1] when `dynamic`, else already
    0/1), labels y and the run's generator, it returns (loss, bound summed over the batch) and
    leaves the gradient of the loss (-mean bound, nats per image) in every parameter's `.grad`,
    ready for `optimizer.step()`. It draws the binarisation bits and the Gaussian noise from
    the generator first (pixels, then z), outside the compiled function, so the compiled
    and the eager step consume identical random numbers and agree to float rounding.

    Eager, the gradients come from autograd (`loss.backward()`). Compiled, they come from
    `torch.func.grad_and_value`, so the loss and its gradients are one generated program with no
    autograd graph to record and replay: on a 2-core CPU that saved 0.5-0.7 ms of a 10 ms step in
    paired timings. If compilation fails, the step says so once and goes eager.

    Compiling needs the encoder to give a Gaussian q (every vaelab model does); for any other q
    the step runs eagerly with `rsample`. Only full batches go through the compiled function (one
    static shape, one compilation); an epoch's short last batch runs eagerly.
    """

    def __init__(self, model: VAE, config: TrainConfig, dynamic: bool, compile: bool):
        self.model = model
        self.config = config
        self.dynamic = dynamic
        self.compiled = CompiledOrEager(self._gradients, "the training step", enabled=compile, dynamic=False)
        self._as_module = _LossModule(self)
        self._parameters = list(self._as_module.named_parameters())  # walked once, not every step
        self._gaussian: bool | None = None

    def _loss(self, x, y, bits, noise, generator=None):
        if bits is not None:  # dynamic binarisation: x ~ Bernoulli(gray level), fresh every time
            x = binarize(x, bits)
        bound = training_loss(self.model, x, y, self.config, generator, noise)
        return -bound.mean(), bound.detach().sum()

    def _loss_with(self, parameters, x, y, bits, noise):
        """_loss with the model's parameters replaced by `parameters` (name -> tensor)."""
        return torch.func.functional_call(self._as_module, parameters, (x, y, bits, noise))

    def _gradients(self, x, y, bits, noise):
        """({name: d loss / d parameter}, (loss [], bound summed over the batch [])), trainable parameters."""
        parameters = {name: p.detach() for name, p in self._parameters if p.requires_grad}
        return torch.func.grad_and_value(self._loss_with, has_aux=True)(parameters, x, y, bits, noise)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss [], bound summed over the batch []) for this batch; the gradients go to `.grad`."""
        bits = binarization_bits(x, generator) if self.dynamic else None
        if not self._gaussian_q(x, y):  # rsample draws z inside the loss, from the generator
            return self._backward(*self._loss(x, y, bits, None, generator))
        noise = objectives.standard_noise(self.model, x.shape[0], self.config.samples, generator, x.device, x.dtype)
        if x.shape[0] == self.config.batch_size and self.compiled.active:
            gradients, (loss, bound_sum) = self.compiled(x, y, bits, noise)
            for name, parameter in self._parameters:
                parameter.grad = gradients.get(name)
            return loss, bound_sum
        return self._backward(*self._loss(x, y, bits, noise))

    def _backward(self, loss: torch.Tensor, bound_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), bound_sum

    def _gaussian_q(self, x: torch.Tensor, y: torch.Tensor | None) -> bool:
        """Whether the encoder gives a (diagonal) Gaussian, which drawn noise can reparameterise."""
        if self._gaussian is None:
            with torch.no_grad():
                q = self.model.encoder(x[:1], None if y is None else y[:1])
            self._gaussian = isinstance(q.base_dist if isinstance(q, Independent) else q, Normal)
        return self._gaussian


class _LossModule(torch.nn.Module):
    """A TrainStep's loss as a module's forward, for torch.func.functional_call: parameters "model.*"."""

    def __init__(self, step: TrainStep):
        super().__init__()
        self.model = step.model
        self._loss = step._loss

    def forward(self, x, y, bits, noise):
        return self._loss(x, y, bits, noise)


@dataclass
class EpochState:
    """Where an epoch stands: its order of images, the batches done, and the bound summed so far."""

    order: torch.Tensor  # [n] int64 permutation
    step: int
    bound_sum: torch.Tensor  # [] float32


class _Stopped(Exception):
    def __init__(self, state: EpochState):
        super().__init__("stopped")
        self.state = state


def train_epoch(model: VAE, optimizer: torch.optim.Optimizer, data: DeviceSplit, config: TrainConfig,
                generator: torch.Generator, epoch: int, progress: bool, state: EpochState | None = None,
                should_stop: Callable[[], bool] = lambda: False,
                step: TrainStep | None = None) -> tuple[float, int]:
    """One pass over the training set in random order. Returns (mean bound per image, steps).

    `state` continues an interrupted epoch. If `should_stop()` turns true, the epoch stops between
    two steps and raises _Stopped with the state to continue from. `step` computes each batch's
    loss (default: an eager TrainStep; pass one built once, compiled, to reuse it across epochs).
    """
    model.train()
    step = step or TrainStep(model, config, dynamic=not data.binary, compile=False)
    n = data.x.shape[0]
    device = data.x.device
    if state is None:
        state = EpochState(torch.randperm(n, generator=generator, device=device), 0,
                           torch.zeros((), device=device))
    order, bound_sum = state.order, state.bound_sum
    first_bad_step = torch.full((), -1, dtype=torch.long, device=device)  # tracked without a host sync
    sync_every = 25  # reading the loss back forces a host sync: do it rarely
    steps = state.step
    bar = tqdm(total=n, initial=min(steps * config.batch_size, n), desc=f"epoch {epoch}", unit="img", leave=False,
               disable=not progress, dynamic_ncols=True)
    with bar:
        for start in range(steps * config.batch_size, n, config.batch_size):
            if should_stop():
                raise _Stopped(EpochState(order, steps, bound_sum))
            index = order[start : start + config.batch_size]
            x = data.x.index_select(0, index)  # a third of the time of data.x[index] on a CPU
            loss, batch_bound = step(x, labels_for(model, data.y[index]), generator)
            optimizer.step()
            bound_sum += batch_bound
            steps += 1
            # a non-finite gradient makes the parameters, and so the next loss, non-finite too
            first_bad_step = torch.where(torch.isfinite(loss) | (first_bad_step >= 0), first_bad_step,
                                         first_bad_step.new_full((), steps))
            if steps % sync_every == 0 or start + config.batch_size >= n:
                seen = min(start + config.batch_size, n)
                running = bound_sum.item() / seen
                if not math.isfinite(running):
                    bad = int(first_bad_step.item())
                    raise TrainingDiverged(f"the loss became non-finite in epoch {epoch} at step {bad} of the epoch")
                bar.update(seen - bar.n)
                bar.set_postfix_str(f"bound {running:.2f}")
    return bound_sum.item() / n, steps


@torch.no_grad()
def validate(model: VAE, data: DeviceSplit, batch_size: int = 1000, seed: int = VALIDATION_SEED) -> dict:
    """ELBO and its terms on a fixed split with a fixed seed: mean nats per image."""
    model.eval()
    generator = torch.Generator(device=data.x.device).manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64, device=data.x.device)
    for start in range(0, data.x.shape[0], batch_size):
        x = data.x[start : start + batch_size]
        y = labels_for(model, data.y[start : start + batch_size])
        terms = objectives.elbo(model, x, y, samples=1, generator=generator)
        sums += torch.stack([terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()]).double()
    elbo, recon, kl = (sums / data.x.shape[0]).tolist()
    return {"elbo": elbo, "recon": recon, "kl": kl}


def fixed_latents(model: VAE, columns: int, seed: int) -> torch.Tensor:
    """The z used for every sample grid of a run: [rows * columns, d], drawn once from the prior."""
    rows = model.num_classes if model.conditional else columns
    generator = torch.Generator().manual_seed(seed + 7919)
    return torch.randn(rows * columns, model.latent_dim, generator=generator)


@torch.no_grad()
def grid_means(model: VAE, z: torch.Tensor, columns: int) -> tuple[np.ndarray, list[int] | None]:
    """Decoder means for the fixed z: (rows * columns, 784) in [0, 1], and the class of each row."""
    model.eval()
    device = next(model.parameters()).device
    z = z.to(device)
    if model.conditional:
        rows = list(range(model.num_classes))
        y = torch.arange(model.num_classes, device=device).repeat_interleave(columns)
        # the same `columns` latent codes in every row, so a column shows one style across classes
        z = z[:columns].repeat(model.num_classes, 1)
        return decoder_mean(model.decoder(z, y)).cpu().numpy(), rows
    return decoder_mean(model.decoder(z)).cpu().numpy(), None


def _check_resume_compatible(stored: TrainConfig, asked: TrainConfig, explicit: set[str]) -> TrainConfig:
    """On --resume the stored config rules; only epochs, patience, device, compile and sample epochs may change."""
    changeable = {"epochs", "patience", "device", "sample_epochs", "compile"}
    for name in sorted(explicit - changeable):
        if getattr(stored, name) != getattr(asked, name):
            raise RunError(f"--{name.replace('_', '-')} differs from the run being resumed "
                           f"({getattr(asked, name)!r} vs {getattr(stored, name)!r}); only --epochs, --patience, "
                           "--device, --compile and --sample-epochs may change on --resume")
    updates = {name: getattr(asked, name) for name in explicit & changeable}
    return config_from_dict({**stored.to_dict(), **updates})


class StopSignals:
    """While active, SIGINT and SIGTERM only set a flag that the training loop checks between steps."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __call__(self) -> bool:
        return self.received is not None

    def __enter__(self) -> "StopSignals":
        def handler(signum, frame):
            self.received = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: signals keep their default handling
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _remove_stale_temporaries(run: RunDir) -> None:
    """A process killed while writing leaves `.NAME.XXXX.tmp` files behind; they are never the real file."""
    for folder in (run.path, run.samples):
        for stale in folder.glob(".*.tmp") if folder.is_dir() else ():
            stale.unlink(missing_ok=True)


def new_training(config: TrainConfig, device: torch.device, dynamic: bool,
                 compile: bool) -> tuple[VAE, torch.optim.Optimizer, torch.Generator, TrainStep]:
    """A fresh model, its optimizer, the run's generator and its training step, as `train` makes them.

    The global torch seed is set once, for the parameter initialisation; every later random draw
    comes from the returned generator (checkpointed with the run).
    """
    torch.manual_seed(config.seed)
    model = build_model(config.model_config()).to(device)
    optimizer = make_adam(model.parameters(), config.lr)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    return model, optimizer, generator, TrainStep(model, config, dynamic, compile)


def train(config: TrainConfig, out: str | Path, resume: bool = False, explicit: set[str] | None = None,
          log: Log = print, progress: bool = True, cache_dir: str | Path | None = None) -> list[dict]:
    """Train a model as `config` says, writing the run directory `out`. Returns the metrics rows.

    resume=True continues the run in `out` from its latest checkpoint (or starts it, if it has none).
    `explicit` names the settings the user gave on this call (checked against the stored config).
    SIGINT or SIGTERM saves the state mid-epoch and raises TrainingInterrupted; resuming then gives
    exactly the run that was not interrupted.
    """
    run = RunDir(Path(out))
    explicit = explicit or set()
    start_epoch, best_valid, since_best = 1, -math.inf, 0
    checkpoint = None
    if run.checkpoint.is_file() or run.config.is_file():
        if not resume:
            raise RunError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")
        if run.checkpoint.is_file():
            stored = config_from_dict(read_json(run.config))
            config = _check_resume_compatible(stored, config, explicit)
            checkpoint = load_checkpoint(run.checkpoint)
    device = resolve_device(config.device)
    # the data first: a failure here leaves no half-made run directory behind
    raw = load_raw(config.dataset, data_dir=config.data_dir, cache_dir=cache_dir, log=log)
    splits = make_splits(raw, config.binarize, config.train_on, config.limit_train)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(run)
        write_json(run.config, config.to_dict())
    except OSError as exc:
        raise RunError(f"cannot write to the run directory {run.path} ({exc.strerror}); choose a writable --out") from None

    train_data = DeviceSplit.from_split(splits.train, device)
    valid_data = DeviceSplit.from_split(splits.valid, device)
    steps_left = (config.epochs - (checkpoint.info["epoch"] if checkpoint else 0)) * \
        math.ceil(len(splits.train) / config.batch_size)
    model, optimizer, generator, step = new_training(config, device, dynamic=not train_data.binary,
                                                     compile=use_compile(config.compile, steps_left, COMPILE_FROM_STEPS))
    rows = []
    partial: EpochState | None = None
    if checkpoint is not None:
        checkpoint.restore(model, optimizer, generator, path=run.checkpoint)
        info = checkpoint.info
        start_epoch = info["epoch"] + 1
        best_valid, since_best = info["best_valid_elbo"], info["epochs_since_best"]
        rows = [row for row in read_metrics(run.metrics) if row["epoch"] <= info["epoch"]]
        write_metrics(run.metrics, rows)  # drop an epoch logged after the last checkpoint
        if "partial_step" in info:
            partial = EpochState(checkpoint.tensors["partial.order"].to(device), info["partial_step"],
                                 checkpoint.tensors["partial.bound_sum"].to(device))
        if info.get("stopped_early") and start_epoch <= config.epochs and not explicit & {"patience"}:
            log(f"{run.path}: stopped early at epoch {info['epoch']}; nothing to resume")
            return rows
        if start_epoch > config.epochs:
            log(f"{run.path}: all {config.epochs} epochs are done; pass a larger --epochs to train on")
            return rows
        where = f"epoch {start_epoch}, step {partial.step}" if partial else f"the end of epoch {info['epoch']}"
        log(f"resuming {run.path} from {where}")
    else:
        write_metrics(run.metrics, [])

    grid_z = fixed_latents(model, GRID_COLUMNS, config.seed)
    log(f"training {config.model.upper()} (d = {config.latent_dim}) on {len(splits.train)} {config.dataset} images, "
        f"{device.type}{' (compiled step)' if step.compiled.active else ''}, batch {config.batch_size}, "
        f"{config.epochs} epochs max -> {run.path}")

    from .report.plots import save_sample_grid  # matplotlib loads only when a run starts

    def save_state(info: dict, extra: dict | None = None) -> None:
        try:
            save_checkpoint(run.checkpoint, model, info, optimizer, generator, extra)
        except OSError as exc:
            kept = "the previous checkpoint is intact" if run.checkpoint.is_file() else "no checkpoint was written yet"
            raise RunError(f"could not write {run.checkpoint} ({exc.strerror}); {kept}: "
                           f"free some space and resume with: vaelab train --out {run.path} --resume") from None

    def interrupted(where: str) -> TrainingInterrupted:
        name = signal.Signals(stop.received).name
        return TrainingInterrupted(f"{name} received {where}; the state is saved in {run.checkpoint}. "
                                   f"Resume with: vaelab train --out {run.path} --resume", 128 + stop.received)

    with StopSignals() as stop:
        for epoch in range(start_epoch, config.epochs + 1):
            started = time.perf_counter()
            images_before = min(partial.step * config.batch_size, len(splits.train)) if partial else 0
            try:
                train_bound, steps = train_epoch(model, optimizer, train_data, config, generator, epoch, progress,
                                                 state=partial, should_stop=stop, step=step)
            except _Stopped as stopped:
                info = {"epoch": epoch - 1, "best_valid_elbo": best_valid, "epochs_since_best": since_best,
                        "stopped_early": False, "partial_step": stopped.state.step}
                save_state(info, {"partial.order": stopped.state.order, "partial.bound_sum": stopped.state.bound_sum})
                raise interrupted(f"in epoch {epoch} after step {stopped.state.step}") from None
            except TrainingDiverged as exc:
                last = f"the last good checkpoint is {run.checkpoint}" if run.checkpoint.is_file() else \
                    "no checkpoint was written yet"
                raise TrainingDiverged(f"{exc}; training stopped, {last}") from None
            partial = None
            train_seconds = time.perf_counter() - started
            valid = validate(model, valid_data)
            if not all(math.isfinite(v) for v in valid.values()):
                raise TrainingDiverged(f"the validation ELBO became non-finite after epoch {epoch}; training "
                                       f"stopped, the last good checkpoint is {run.checkpoint}")
            improved = valid["elbo"] > best_valid
            if improved:
                best_valid, since_best = valid["elbo"], 0
            else:
                since_best += 1
            stop_early = config.patience > 0 and since_best >= config.patience
            row = {
                "epoch": epoch,
                config.bound_key: train_bound,
                "valid_elbo": valid["elbo"],
                "valid_recon": valid["recon"],
                "valid_kl": valid["kl"],
                "seconds": train_seconds,
                "samples_per_second": (len(splits.train) - images_before) / train_seconds,
                "steps": (rows[-1]["steps"] if rows else 0) + steps,
            }
            rows.append(row)
            info = {"epoch": epoch, "best_valid_elbo": best_valid, "epochs_since_best": since_best,
                    "stopped_early": stop_early}
            try:
                if improved:
                    save_checkpoint(run.best, model, info)
                if epoch == 1 or epoch in config.sample_epochs or epoch == config.epochs or stop_early:
                    means, row_labels = grid_means(model, grid_z, GRID_COLUMNS)
                    save_sample_grid(run.sample_grid(epoch), means, GRID_COLUMNS, row_labels, splits.class_names,
                                     title=f"{config.model.upper()} samples, epoch {epoch} (Bernoulli means)")
                write_metrics(run.metrics, rows)
            except OSError as exc:
                raise RunError(f"could not write to {run.path} after epoch {epoch} ({exc.strerror}); the last "
                               f"checkpoint is intact: free some space and resume with: vaelab train --out "
                               f"{run.path} --resume") from None
            save_state(info)
            log(f"epoch {epoch:3d}  train {config.bound_name} {train_bound:8.2f}  valid ELBO {valid['elbo']:8.2f} "
                f"(recon {valid['recon']:.2f}, KL {valid['kl']:.2f})  {train_seconds:5.1f} s  "
                f"{row['samples_per_second']:,.0f} img/s")
            if stop_early:
                log(f"early stop: validation ELBO has not improved for {config.patience} epochs (best {best_valid:.2f})")
                break
            if stop():
                raise interrupted(f"after epoch {epoch}")
    return rows
