"""The training loop: SGVB (or IWAE) with Adam, validation every epoch, checkpoints, resume.

The data lives on the device as tensors; each epoch draws a permutation and (for dynamic
binarisation) fresh pixels from one explicit torch.Generator, whose state is checkpointed with the
model and the optimizer, so a resumed run repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import objectives
from .config import TrainConfig, config_from_dict
from .data import Split, load_raw, make_splits
from .errors import RunError, VaelabError
from .models import VAE, build_model, decoder_mean
from .runs import RunDir, load_checkpoint, read_json, read_metrics, save_checkpoint, write_json, write_metrics

Log = Callable[[str], None]
GRID_COLUMNS = 8  # samples per class in the sample grids saved during training
VALIDATION_SEED = 1234  # validation ELBO draws the same z every epoch, so epochs compare


class TrainingDiverged(VaelabError):
    """The loss or a gradient became NaN or infinite."""


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
                  generator: torch.Generator) -> torch.Tensor:
    """The bound per image being maximised, [batch] nats (ELBO or IW bound)."""
    if config.objective == "iwae":
        return objectives.iw_bound(model, x, y, config.samples, generator)
    return objectives.elbo(model, x, y, config.samples, generator).elbo


def train_epoch(model: VAE, optimizer: torch.optim.Optimizer, data: DeviceSplit, config: TrainConfig,
                generator: torch.Generator, epoch: int, progress: bool) -> tuple[float, int]:
    """One pass over the training set in random order. Returns (mean bound per image, steps)."""
    model.train()
    n = data.x.shape[0]
    order = torch.randperm(n, generator=generator, device=data.x.device)
    bound_sum = torch.zeros((), device=data.x.device)
    sync_every = 25  # reading the loss back forces a host sync: do it rarely
    steps = 0
    bar = tqdm(total=n, desc=f"epoch {epoch}", unit="img", leave=False, disable=not progress, dynamic_ncols=True)
    with bar:
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            x = data.x[index]
            if not data.binary:  # dynamic binarisation: fresh pixels every time an image is seen
                x = (torch.rand(x.shape, generator=generator, device=x.device) < x).to(x.dtype)
            bound = training_loss(model, x, labels_for(model, data.y[index]), config, generator)
            loss = -bound.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bound_sum += bound.detach().sum()
            steps += 1
            if steps % sync_every == 0 or start + config.batch_size >= n:
                seen = min(start + config.batch_size, n)
                running = bound_sum.item() / seen
                if not math.isfinite(running):
                    raise TrainingDiverged(f"the training bound became {running} in epoch {epoch}, "
                                           f"between steps {max(steps - sync_every, 0) + 1} and {steps}")
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
    """On --resume the stored config rules; only epochs, patience, device and sample epochs may change."""
    changeable = {"epochs", "patience", "device", "sample_epochs"}
    for name in sorted(explicit - changeable):
        if getattr(stored, name) != getattr(asked, name):
            raise RunError(f"--{name.replace('_', '-')} differs from the run being resumed "
                           f"({getattr(asked, name)!r} vs {getattr(stored, name)!r}); only --epochs, --patience, "
                           "--device and --sample-epochs may change on --resume")
    updates = {name: getattr(asked, name) for name in explicit & changeable}
    return config_from_dict({**stored.to_dict(), **updates})


def train(config: TrainConfig, out: str | Path, resume: bool = False, explicit: set[str] | None = None,
          log: Log = print, progress: bool = True, cache_dir: str | Path | None = None) -> list[dict]:
    """Train a model as `config` says, writing the run directory `out`. Returns the metrics rows.

    resume=True continues the run in `out` from its latest checkpoint (or starts it, if it has none).
    `explicit` names the settings the user gave on this call (checked against the stored config).
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
        write_json(run.config, config.to_dict())
    except OSError as exc:
        raise RunError(f"cannot write to the run directory {run.path} ({exc.strerror}); choose a writable --out") from None

    torch.manual_seed(config.seed)  # parameter initialisation; everything after uses `generator`
    model = build_model(config.model_config()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    rows = []
    if checkpoint is not None:
        checkpoint.restore(model, optimizer, generator, path=run.checkpoint)
        info = checkpoint.info
        start_epoch = info["epoch"] + 1
        best_valid, since_best = info["best_valid_elbo"], info["epochs_since_best"]
        rows = [row for row in read_metrics(run.metrics) if row["epoch"] <= info["epoch"]]
        write_metrics(run.metrics, rows)  # drop an epoch logged after the last checkpoint
        if info.get("stopped_early") and start_epoch <= config.epochs and not explicit & {"patience"}:
            log(f"{run.path}: stopped early at epoch {info['epoch']}; nothing to resume")
            return rows
        if start_epoch > config.epochs:
            log(f"{run.path}: all {config.epochs} epochs are done; pass a larger --epochs to train on")
            return rows
        log(f"resuming {run.path} after epoch {info['epoch']}")
    else:
        write_metrics(run.metrics, [])

    train_data = DeviceSplit.from_split(splits.train, device)
    valid_data = DeviceSplit.from_split(splits.valid, device)
    grid_z = fixed_latents(model, GRID_COLUMNS, config.seed)
    log(f"training {config.model.upper()} (d = {config.latent_dim}) on {len(splits.train)} {config.dataset} images, "
        f"{device.type}, batch {config.batch_size}, {config.epochs} epochs max -> {run.path}")

    from .plots import save_sample_grid  # matplotlib loads only when a run starts

    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        train_bound, steps = train_epoch(model, optimizer, train_data, config, generator, epoch, progress)
        train_seconds = time.perf_counter() - started
        valid = validate(model, valid_data)
        improved = valid["elbo"] > best_valid
        if improved:
            best_valid, since_best = valid["elbo"], 0
        else:
            since_best += 1
        stop_early = config.patience > 0 and since_best >= config.patience
        row = {
            "epoch": epoch,
            f"train_{'elbo' if config.objective == 'elbo' else 'iw_bound'}": train_bound,
            "valid_elbo": valid["elbo"],
            "valid_recon": valid["recon"],
            "valid_kl": valid["kl"],
            "seconds": train_seconds,
            "samples_per_second": len(splits.train) / train_seconds,
            "steps": (rows[-1]["steps"] if rows else 0) + steps,
        }
        if not all(math.isfinite(v) for v in valid.values()):
            raise TrainingDiverged(f"the validation ELBO became non-finite after epoch {epoch}; the last good "
                                   f"checkpoint is {run.checkpoint}")
        rows.append(row)
        info = {"epoch": epoch, "best_valid_elbo": best_valid, "epochs_since_best": since_best,
                "stopped_early": stop_early}
        if improved:
            save_checkpoint(run.best, model, info)
        if epoch == 1 or epoch in config.sample_epochs or epoch == config.epochs or stop_early:
            means, row_labels = grid_means(model, grid_z, GRID_COLUMNS)
            save_sample_grid(run.sample_grid(epoch), means, GRID_COLUMNS, row_labels, splits.class_names,
                             title=f"{config.model.upper()} samples, epoch {epoch} (Bernoulli means)")
        write_metrics(run.metrics, rows)
        save_checkpoint(run.checkpoint, model, info, optimizer, generator)
        bound_name = "ELBO" if config.objective == "elbo" else f"IW bound (k={config.samples})"
        log(f"epoch {epoch:3d}  train {bound_name} {train_bound:8.2f}  valid ELBO {valid['elbo']:8.2f} "
            f"(recon {valid['recon']:.2f}, KL {valid['kl']:.2f})  {train_seconds:5.1f} s  "
            f"{row['samples_per_second']:,.0f} img/s")
        if stop_early:
            log(f"early stop: validation ELBO has not improved for {config.patience} epochs (best {best_valid:.2f})")
            break
    return rows
