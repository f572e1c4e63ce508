"""A run directory: the one place its layout is defined, and the model its files describe.

    DIR/config.json            the TrainConfig of the run
    DIR/metrics.jsonl          one JSON object per finished epoch
    DIR/checkpoint.safetensors latest state: model, optimizer, RNG, epoch (for --resume)
    DIR/best.safetensors       model with the best validation ELBO so far
    DIR/samples/epoch_NNN.png  per-class (or random) sample grids from one fixed set of z
    DIR/eval.json              the output of `vaelab evaluate`
    DIR/data.npz               the images and labels handed to `vaelab.train` in memory (arrays, a Dataset)
    DIR/tensorboard/           TensorBoard event files (with --tensorboard)

Checkpoints are safetensors plus JSON (`checkpoints.py`); nothing in a run directory is ever
unpickled. Every file is written atomically: temporary file, flush, fsync, rename, fsync folder.
A run directory may come from someone else: its files are checked against each other before a
model is built from them (`stored_config`, `check_agreement`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig, config_from_dict
from ..data import get_spec
from ..errors import NotRegistered, RunError, VaelabError
from ..models import Model, build_model
from ..runtime.files import atomic_write_bytes
from .checkpoints import Checkpoint
from .migration import current_config


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    @property
    def best(self) -> Path:
        return self.path / "best.safetensors"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def eval(self) -> Path:
        return self.path / "eval.json"

    @property
    def data(self) -> Path:
        return self.path / "data.npz"

    def sample_grid(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:03d}.png"

    def require_run(self) -> "RunDir":
        """Raise RunError unless this folder holds a trained run."""
        if not self.path.is_dir():
            raise RunError(f"run directory {self.path} does not exist; train one with: vaelab train --out {self.path}")
        if not self.config.is_file() or not (self.best.is_file() or self.checkpoint.is_file()):
            raise RunError(f"{self.path} holds no finished epoch of a vaelab run (no config.json or checkpoint);"
                           " give the --out folder of a `vaelab train` run")
        return self


def write_json(path: Path, value) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is not readable JSON ({exc})") from None


def read_metrics(path: Path) -> list[dict]:
    """The epochs logged so far (a torn last line, from a crash mid-write, is ignored)."""
    if not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def write_metrics(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())




def stored_config(run: RunDir) -> TrainConfig:
    """The run's config.json, checked like user input except for the upper limits on sizes (the
    checkpoint, checked against it by `check_agreement`, says what fits)."""
    values = read_json(run.config)
    if not isinstance(values, dict):
        raise RunError(f"{run.config} is not a vaelab config (not a JSON object); the file was edited or is damaged")
    try:
        return config_from_dict(current_config(values), limits=False)
    except NotRegistered:
        raise  # not damage: the module that registers its family or network is to be imported
    except VaelabError as exc:
        raise RunError(f"{run.config}: {exc}; the file was edited or is damaged") from None


def new_model(config: TrainConfig, train_images: int | None = None, modules: dict | None = None) -> Model:
    """A freshly initialised model as `config` describes it, for images of its dataset (on the CPU,
    or on torch's current default device); train_images: how many images it is built to train on
    (None: it is built to be loaded). modules: the encoder, decoder (and classifier) modules of a run
    made with modules handed to `vaelab.train` (network "given"): they are its parts again."""
    spec = get_spec(config.dataset)
    labelled = None if train_images is None else config.labels
    labelled_batch = 0 if train_images is None else config.labelled_batch_size()
    return build_model(config.model, spec.image_shape, spec.num_classes, train_images, labelled, labelled_batch,
                       modules=modules, **config.family_settings())


def check_agreement(config: TrainConfig, checkpoint: Checkpoint, config_path: Path,
                    modules: dict | None = None) -> None:
    """RunError unless `checkpoint` holds exactly the tensors of the model `config` describes.

    The model is built on torch's meta device (shapes without memory), so a config.json edited to
    absurd sizes costs nothing and is reported as what it is. modules: as `new_model`'s.
    """
    with torch.device("meta"):
        expected = {name: value.shape for name, value in new_model(config, modules=modules).state_dict().items()}
    problem = checkpoint.disagreement(expected)
    if problem:
        raise RunError(f"{config_path} and {checkpoint.path.name} disagree ({problem}); one of them was edited or "
                       "they come from different runs: restore the run directory or train again")
