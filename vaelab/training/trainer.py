"""`train`: a run directory from a config: the epochs, validation, checkpoints, sample grids and resume.

The data lives on the device as tensors. Every random draw after the initialisation comes from the
run's named streams (`randomness.py`), checkpointed with the model and the optimizer, so a resumed
run repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import inference
from ..config import SETTINGS, TrainConfig, config_from_dict
from ..data import labelled_subset, load_raw, make_splits
from ..errors import RunError, RunFailed, TrainingDiverged, TrainingInterrupted
from ..models import Model
from ..runs import RunDir, check_agreement, new_model, read_metrics, stored_config, write_json, write_metrics
from ..runs.migration import PARTIAL_SUMS
from ..runs.checkpoints import Checkpoint, parse_checkpoint, save_checkpoint
from ..runtime.compilation import use_compile
from ..runtime.cpu_share import hold_thread_count
from ..runtime.devices import DeviceSplit, resolve_device
from ..runtime.precision import check_precision, matmul_precision, network_dtype, precision_warning
from ..runtime.processes import SINGLE, Processes, ProcessLost
from .dashboard import Dashboard, summary_writer_class
from .epoch import SYNC_EVERY, EpochState, Stopped, batch_plan, plan_images, train_epoch, validate
from .optimizer import make_adam
from .randomness import RandomStreams
from .samples import GRID_COLUMNS, grid_latents, grid_means
from .schedules import kl_weight, learning_rate
from .signals import AgreedStop, StopSignals
from .step import TrainStep

Log = Callable[[str], None]
COMPILE_FROM_STEPS = 4000  # training steps from which compiling the step pays for its start-up


@dataclass
class Training:
    """What a run trains with: the model, its optimizer, the random streams and the step."""

    model: Model
    optimizer: torch.optim.Optimizer
    streams: RandomStreams
    step: TrainStep


def new_training(config: TrainConfig, device: torch.device, dynamic: bool, compile: bool,
                 train_images: int | None = None, processes: Processes = SINGLE,
                 modules: dict | None = None) -> Training:
    """A fresh model, its optimizer, the run's random streams and its training step, as `train` makes them.

    The parameters are initialised from torch's global generator seeded with the run's seed, inside
    `torch.random.fork_rng`, so the caller's global generator is where it was; every later random
    draw comes from the returned streams (checkpointed with the run). train_images: how many
    images it trains on (a family may size what it weighs by it, as M2 its alpha). modules: the
    encoder and decoder (and classifier) handed to `vaelab.train`, for the network "given".
    """
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=gpus):  # manual_seed seeds the GPUs' generators too
        torch.manual_seed(config.seed)
        model = new_model(config, train_images, modules)
    model = model.to(device)
    step = TrainStep(model, config.objective, config.samples, config.batch_size, dynamic, compile, processes,
                     config.clip_grad_norm, labelled_apart=config.labelled_batch_size() > 0,
                     precision=network_dtype(config.precision))
    return Training(model, make_adam(model.parameters(), config.lr), RandomStreams.seeded(config.seed, device), step)


def _resume_config(stored: TrainConfig, asked: TrainConfig, explicit: set[str]) -> TrainConfig:
    """On --resume the stored config rules; only the settings marked changes_on_resume may change."""
    changeable = {name for name, declared in SETTINGS.items() if declared.changes_on_resume}
    for name in sorted(explicit - changeable):
        if stored.get(name) != asked.get(name):
            raise RunError(f"{{{name}}} differs from the run being resumed ({asked.get(name)!r} vs "
                           f"{stored.get(name)!r}); only {', '.join('{' + n + '}' for n in sorted(changeable))} "
                           "may change on {resume}")
    updates = {name: getattr(asked, name) for name in explicit & changeable}
    return config_from_dict({**stored.to_dict(), **updates}, limits=False)  # the updates were checked as flags


def _remove_stale_temporaries(run: RunDir) -> None:
    """A process killed while writing leaves `.NAME.XXXX.tmp` files behind; they are never the real file."""
    for folder in (run.path, run.samples):
        for stale in folder.glob(".*.tmp") if folder.is_dir() else ():
            stale.unlink(missing_ok=True)


def _restore(training: Training, checkpoint: Checkpoint, device: torch.device) -> EpochState | None:
    """Load a checkpoint's model, optimizer and streams into `training`; the partial epoch, if any."""
    checkpoint.restore(training.model, training.optimizer)
    try:
        training.streams = RandomStreams.from_state_tensors(checkpoint.tensors, device)
    except KeyError:
        raise RunError(f"{checkpoint.path} holds no random-number state, so training cannot resume from it") from None
    if "partial_step" not in checkpoint.info:
        return None
    sums = {name.removeprefix(PARTIAL_SUMS): value.to(device, torch.float64)
            for name, value in checkpoint.tensors.items() if name.startswith(PARTIAL_SUMS)}
    return EpochState(checkpoint.tensors["partial.order"].to(device), checkpoint.info["partial_step"], sums)


def _open_run(run: RunDir, config: TrainConfig, resume: bool, explicit: set[str],
              modules: dict | None = None) -> tuple[TrainConfig, bytes | None, Checkpoint | None]:
    """The config to train with and the checkpoint to resume from, as bytes and read (None: a new run)."""
    if not (run.checkpoint.is_file() or run.config.is_file()):
        return config, None, None
    if not resume:
        raise RunError(f"{run.path} already holds a run; resume it ({{resume}}), or choose another run directory "
                       "({out})")
    if not run.checkpoint.is_file():
        return config, None, None
    try:
        data = run.checkpoint.read_bytes()
    except OSError as exc:
        raise RunError(f"checkpoint {run.checkpoint} is unreadable ({exc.strerror}); restore it or train again") from None
    stored, checkpoint = stored_config(run), parse_checkpoint(data, run.checkpoint)
    check_agreement(stored, checkpoint, run.config, modules)
    return _resume_config(stored, config, explicit), data, checkpoint


def train(config: TrainConfig, out: str | Path, resume: bool = False, explicit: set[str] | None = None,
          log: Log = print, progress: bool = True, processes: Processes = SINGLE,
          between_steps: Callable[[], None] = lambda: None, modules: dict | None = None,
          resume_words: str | None = None) -> list[dict]:
    """Train a model as `config` says, writing the run directory `out`. Returns the metrics rows.

    resume=True continues the run in `out` from its latest checkpoint (or starts it, if it has none).
    `explicit` names the settings the user gave on this call (checked against the stored config).
    SIGINT or SIGTERM saves the state mid-epoch and raises TrainingInterrupted; resuming then gives
    exactly the run that was not interrupted.

    In a group of processes (torchrun; `vaelab.runtime.processes`) every process calls this with the same
    arguments and computes its share of every step; process 0 alone reads and writes `out` and
    logs (the others return no rows), and sends the others the config and checkpoint it resumes.
    A run may resume with another number of processes than it started with.
    `between_steps` is called before every training step (the command line's CPU sharing).
    modules: the encoder and decoder (and classifier) handed to `vaelab.train` (network "given").
    resume_words: how the caller resumes, for the messages (default: the `vaelab train --resume` command).
    """
    hold_thread_count()  # MKL computes with torch's thread count: the same seed, the same bits
    run = RunDir(Path(out))
    explicit = explicit or set()
    if not processes.main:
        log, progress = (lambda _: None), False
    opened = None
    with processes.agreement("opening the run directory"):
        if processes.main:
            opened = _open_run(run, config, resume, explicit, modules)
            if opened[0].tensorboard:
                summary_writer_class()  # or say what to install, before anything is written
    shared = processes.broadcast_json(opened and {"config": opened[0].to_dict(), "resume": opened[1] is not None})
    config = config_from_dict(shared["config"], limits=False) if not processes.main else opened[0]
    checkpoint = opened[2] if processes.main else None
    if shared["resume"]:  # the others get process 0's checkpoint
        data = processes.broadcast_bytes(opened[1] if processes.main else None)
        checkpoint = checkpoint or parse_checkpoint(data, run.checkpoint)
    with processes.agreement("choosing the device"):
        device = processes.device(resolve_device(config.device))
        check_precision(config.precision, device)
    # the data first: a failure here leaves no half-made run directory behind
    with processes.agreement("loading the data"):
        raw = load_raw(config.dataset, data_dir=config.data_dir, cache_dir=config.cache_dir, log=log)
        splits = make_splits(raw, config.binarize, config.train_on, config.limit_train)
        if config.labels is not None:  # checked before anything is written
            labelled_images = labelled_subset(splits.train.labels, config.labels, splits.num_classes,
                                              config.label_seed)
    gray_input = config.encoder_input == "grayscale"
    train_data = DeviceSplit.from_split(splits.train, device, gray_input)
    if config.labels is not None:  # only these images' labels are seen
        train_data.labelled = torch.zeros(len(splits.train), dtype=torch.bool, device=device)
        train_data.labelled[torch.from_numpy(labelled_images).to(device)] = True
    valid_data = DeviceSplit.from_split(splits.valid, device, gray_input)
    done_epochs = checkpoint.info["epoch"] if checkpoint else 0
    steps_left = (config.epochs - done_epochs) * math.ceil(len(splits.train) / config.batch_size)
    # binarised afresh in each step where dynamic; with binarize "expected" the Bernoulli scores the gray
    # levels themselves: x log p + (1 - x) log(1 - p) is its log-likelihood's mean over the draws of x
    training = new_training(config, device, dynamic=config.binarize == "dynamic" and not train_data.binary,
                            compile=use_compile(config.compile, steps_left, COMPILE_FROM_STEPS),
                            train_images=len(splits.train), processes=processes, modules=modules)
    # the model before the run directory: networks of a user's that do not fit are refused with nothing written
    with processes.agreement("writing the run directory"):
        if processes.main:
            try:
                run.path.mkdir(parents=True, exist_ok=True)
                _remove_stale_temporaries(run)
                write_json(run.config, config.to_dict())
            except OSError as exc:
                raise RunError(f"cannot write to the run directory {run.path} ({exc.strerror}); choose a writable "
                               "--out") from None
    history = _History(rows=[], best=-math.inf, since_best=0)
    partial = None
    if checkpoint is not None:
        partial = _restore(training, checkpoint, device)
        info = checkpoint.info
        rows = [row for row in read_metrics(run.metrics) if row["epoch"] <= info["epoch"]] if processes.main else []
        history = _History(rows, info["best_valid_elbo"], info["epochs_since_best"])
        if processes.main:
            write_metrics(run.metrics, history.rows)  # drop an epoch logged after the last checkpoint
        if info.get("stopped_early") and done_epochs < config.epochs and "patience" not in explicit:
            log(f"{run.path}: stopped early at epoch {done_epochs}; nothing to resume")
            return history.rows
        if done_epochs >= config.epochs:
            log(f"{run.path}: all {config.epochs} epochs are done; pass a larger --epochs to train on")
            return history.rows
        where = f"epoch {done_epochs + 1}, step {partial.step}" if partial else f"the end of epoch {done_epochs}"
        log(f"resuming {run.path} from {where}")
    elif processes.main:
        write_metrics(run.metrics, [])
    labelled = f" ({config.labels} of them labelled)" if config.labels is not None else ""
    group = f" x {processes.count} processes" if processes.count > 1 else ""
    how = _step_words(training.step.compiled.active, config.precision, training.step.compiled.mode)
    log(f"training {config.model.upper()} on {len(splits.train)} {Path(config.dataset).name} images"  # a file by its name
        f"{labelled}, "
        f"{device.type}{group}{how}, batch {config.batch_size}, "
        f"{config.epochs} epochs max -> {run.path}")
    if warning := precision_warning(config.precision, device):
        log(warning)
    with matmul_precision(config.precision, device):
        _Epochs(config, run, training, train_data, valid_data, splits.class_names, log, progress, processes,
                between_steps, resume_words).loop(
            done_epochs + 1, history, partial)
    return history.rows if processes.main else []


def _step_words(compiled: bool, precision: str, mode: str | None = None) -> str:
    """" (compiled step, bf16)" and the like for the log's first line: what is not the plain float32 step."""
    notes = ((["compiled step" + (", CUDA graphs" if mode == "reduce-overhead" else "")] if compiled else [])
             + ([precision] if precision != "float32" else []))
    return f" ({', '.join(notes)})" if notes else ""


@dataclass
class _History:
    rows: list[dict]  # metrics.jsonl
    best: float  # best validation ELBO so far
    since_best: int  # epochs since it improved


class _Epochs:
    """The epoch loop of `train`, with what it writes after each epoch and on a signal."""

    def __init__(self, config: TrainConfig, run: RunDir, training: Training, train_data: DeviceSplit,
                 valid_data: DeviceSplit, class_names: tuple[str, ...], log: Log, progress: bool,
                 processes: Processes = SINGLE, between_steps: Callable[[], None] = lambda: None,
                 resume_words: str | None = None):
        self.config, self.run, self.training, self.log, self.progress = config, run, training, log, progress
        self.train_data, self.valid_data, self.class_names = train_data, valid_data, class_names
        self.processes, self.between_steps = processes, between_steps
        self.labelled_batch = config.labelled_batch_size()
        n = train_data.x.shape[0]  # the images of an epoch's steps: the plan's size does not depend on its order
        self.epoch_images = plan_images(batch_plan(torch.arange(n, device=train_data.x.device), train_data.labelled,
                                                   config.batch_size, self.labelled_batch))
        self.dashboard: Dashboard | None = None  # TensorBoard, on process 0 with --tensorboard
        self.resume_words = resume_words or f"vaelab train --out {run.path} --resume"

    def loop(self, first_epoch: int, history: _History, partial: EpochState | None) -> None:
        began = time.perf_counter()
        if self.config.tensorboard and self.processes.main:
            self.dashboard = Dashboard(self.run.tensorboard, first_epoch)
        with StopSignals() as signals, self.dashboard or nullcontext():
            stop = AgreedStop(signals, self.processes, SYNC_EVERY)  # every process stops at the same step
            try:
                self._epochs(first_epoch, history, partial, stop, began)
            except ProcessLost as exc:
                signals.ignore_after = True  # torchrun's SIGTERM must not cut this process's message short
                where = f"; {self.last_good()}; resume with: {self.resume_words}" \
                    if self.processes.main else ""
                raise ProcessLost(f"{exc}{where}") from None

    def _epochs(self, first_epoch: int, history: _History, partial: EpochState | None, stop: AgreedStop,
                began: float) -> None:
        config, training = self.config, self.training
        for epoch in range(first_epoch, config.epochs + 1):
            started = time.perf_counter()
            images_before = plan_images(batch_plan(partial.order, self.train_data.labelled, config.batch_size,
                                                   self.labelled_batch)[: partial.step]) if partial else 0
            lr = learning_rate(config.lr, config.lr_schedule, epoch, config.epochs)
            for group in training.optimizer.param_groups:
                group["lr"] = lr
            try:
                train, steps = train_epoch(training.step, training.optimizer, self.train_data, config.batch_size,
                                                 training.streams, state=partial, should_stop=stop,
                                                 label=f"epoch {epoch}", progress=self.progress,
                                                 kl_weight=config.beta * kl_weight(config.warmup, epoch),
                                                 labelled_batch=self.labelled_batch,
                                                 between_steps=self.between_steps)
            except Stopped as stopped:
                info = {"epoch": epoch - 1, "best_valid_elbo": history.best, "epochs_since_best": history.since_best,
                        "stopped_early": False, "partial_step": stopped.state.step}
                with self.processes.agreement("saving the state"):
                    if self.processes.main:
                        self.save_state(info, {"partial.order": stopped.state.order,
                                               **{PARTIAL_SUMS + name: value
                                                  for name, value in stopped.state.sums.items()}})
                raise self.interrupted(stop, f"in epoch {epoch} after step {stopped.state.step}") from None
            except TrainingDiverged as exc:
                raise TrainingDiverged(f"{exc}; training stopped, {self.last_good()}") from None
            partial = None
            seconds = time.perf_counter() - started
            if self.end_of_epoch(epoch, history, train, steps, seconds, images_before):
                break
            if config.time_limit is not None and self.processes.main_decides(
                    time.perf_counter() - began >= 60 * config.time_limit):
                if epoch < config.epochs:
                    self.log(f"time limit: {config.time_limit:g} minutes of training reached after epoch {epoch}"
                             "; --resume continues")
                break
            if stop(force=True):
                raise self.interrupted(stop, f"after epoch {epoch}")

    def end_of_epoch(self, epoch: int, history: _History, train: dict[str, float], steps: int, seconds: float,
                     images_before: int) -> bool:
        """Validate, log, write the epoch's files and checkpoint; True if training stops early.
        train: the epoch's means per image of the training bound and its parts (`train_epoch`)."""
        config, model = self.config, self.training.model
        valid = validate(model, self.valid_data, processes=self.processes)
        if not all(math.isfinite(v) for v in valid.values()):
            raise TrainingDiverged(f"the validation ELBO became non-finite after epoch {epoch}; training "
                                   f"stopped, {self.last_good()}")
        improved = valid["elbo"] > history.best
        history.best, history.since_best = (valid["elbo"], 0) if improved else (history.best, history.since_best + 1)
        stop_early = config.patience > 0 and history.since_best >= config.patience
        row = {"epoch": epoch, config.bound_key: train["bound"],
               **{f"train_{name}": value for name, value in train.items() if name != "bound"},
               **{f"valid_{name}": value for name, value in valid.items() if name != "accuracy"},
               "seconds": seconds, "samples_per_second": (self.epoch_images - images_before) / seconds,
               "steps": (history.rows[-1]["steps"] if history.rows else 0) + steps,
               "lr": self.training.optimizer.param_groups[0]["lr"],
               "kl_weight": config.beta * kl_weight(config.warmup, epoch), "processes": self.processes.count}
        if "accuracy" in valid:
            row["valid_accuracy"] = valid["accuracy"]
        history.rows.append(row)
        info = {"epoch": epoch, "best_valid_elbo": history.best, "epochs_since_best": history.since_best,
                "stopped_early": stop_early}
        with self.processes.agreement(f"writing the files of epoch {epoch}"):
            if self.processes.main:
                try:
                    if improved:
                        save_checkpoint(self.run.best, model, info)
                    grid = epoch == 1 or epoch in config.sample_epochs or epoch == config.epochs or stop_early
                    if grid:
                        self.save_grid(epoch)
                    write_metrics(self.run.metrics, history.rows)
                    if self.dashboard is not None:
                        self.dashboard.epoch(row, self.run.sample_grid(epoch) if grid else None,
                                             inference.active_units(model, self.valid_data))
                except OSError as exc:
                    raise RunFailed(f"could not write to {self.run.path} after epoch {epoch} ({exc.strerror}); the "
                                   f"last checkpoint is intact: free some space and resume with: "
                                   f"{self.resume_words}") from None
                self.save_state(info)
        parts = ", ".join(f"{name} {value:.2f}" for name, value in valid.items() if name not in ("elbo", "accuracy"))
        self.log(f"epoch {epoch:3d}  train {config.bound_name} {train['bound']:8.2f}  valid ELBO {valid['elbo']:8.2f} "
                 f"({parts})  "
                 + (f"accuracy {100 * valid['accuracy']:.2f}%  " if "accuracy" in valid else "")
                 + f"{seconds:5.1f} s  "
                 f"{row['samples_per_second']:,.0f} img/s")
        if stop_early:
            self.log(f"early stop: validation ELBO has not improved for {config.patience} epochs "
                     f"(best {history.best:.2f})")
        return stop_early

    def save_grid(self, epoch: int) -> None:
        from ..pictures.grids import save_sample_grid  # matplotlib loads only when a grid is drawn

        model = self.training.model
        means, row_labels = grid_means(model, grid_latents(model, GRID_COLUMNS, self.config.seed), GRID_COLUMNS)
        save_sample_grid(self.run.sample_grid(epoch), means, GRID_COLUMNS, row_labels, self.class_names,
                         title=f"{self.config.model.upper()} samples, epoch {epoch} "
                               f"({model.pixel_words})")

    def save_state(self, info: dict, extra: dict | None = None) -> None:
        """Write the checkpoint (process 0's job)."""
        training = self.training
        try:
            save_checkpoint(self.run.checkpoint, training.model, info, training.optimizer, {**training.streams.state_tensors(), **(extra or {})})
        except OSError as exc:
            kept = "the previous checkpoint is intact" if self.run.checkpoint.is_file() else "no checkpoint was written yet"
            raise RunFailed(f"could not write {self.run.checkpoint} ({exc.strerror}); {kept}: "
                           f"free some space and resume with: {self.resume_words}") from None

    def last_good(self) -> str:
        if not self.processes.main:
            return "process 0 says where the last good checkpoint is"
        return f"the last good checkpoint is {self.run.checkpoint}" if self.run.checkpoint.is_file() else \
            "no checkpoint was written yet"

    def interrupted(self, stop: AgreedStop, where: str) -> TrainingInterrupted:
        return TrainingInterrupted(f"{stop.name} received {where}; the state is saved in {self.run.checkpoint}. "
                                   f"Resume with: {self.resume_words}", 128 + stop.received)
