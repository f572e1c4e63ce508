"""Training configuration: one dataclass, checked in one place, read from defaults < TOML file < flags."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .data import BINARIZE_MODES, DATASETS
from .errors import VaelabError
from .fast import COMPILE_MODES
from .models import ACTIVATIONS, LIKELIHOODS, MODEL_KINDS, ModelConfig

OBJECTIVES = ("elbo", "iwae")
DEVICES = ("auto", "cpu", "cuda")
TRAIN_ON = ("train", "train+valid")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Stored as the run's config.json."""

    model: str = "cvae"
    dataset: str = "mnist"
    latent_dim: int = 40
    hidden: tuple[int, ...] = (500, 500)
    activation: str = "relu"
    likelihood: str = "bernoulli"
    binarize: str = "dynamic"
    objective: str = "elbo"
    samples: int = 1
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    compile: str = "auto"
    patience: int = 0
    train_on: str = "train"
    limit_train: int | None = None
    sample_epochs: tuple[int, ...] = (1, 10, 25, 50, 100)
    data_dir: str | None = None

    def model_config(self) -> ModelConfig:
        return ModelConfig(model=self.model, latent_dim=self.latent_dim, hidden=self.hidden,
                           activation=self.activation, likelihood=self.likelihood)

    @property
    def bound_key(self) -> str:
        """The metrics.jsonl key of the training bound: train_elbo or train_iw_bound."""
        return "train_elbo" if self.objective == "elbo" else "train_iw_bound"

    @property
    def bound_name(self) -> str:
        return "ELBO" if self.objective == "elbo" else f"IW bound (k = {self.samples})"

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        out["sample_epochs"] = list(self.sample_epochs)
        return out


# name -> (type, allowed values or None, what is allowed, in words)
_FIELDS = {
    "model": (str, MODEL_KINDS, None),
    "dataset": (str, tuple(DATASETS), None),
    "latent_dim": (int, None, "a whole number >= 1"),
    "hidden": (tuple, None, "comma-separated whole numbers >= 1, e.g. 500,500"),
    "activation": (str, tuple(ACTIVATIONS), None),
    "likelihood": (str, LIKELIHOODS, None),
    "binarize": (str, BINARIZE_MODES, None),
    "objective": (str, OBJECTIVES, None),
    "samples": (int, None, "a whole number >= 1"),
    "epochs": (int, None, "a whole number >= 1"),
    "batch_size": (int, None, "a whole number >= 1"),
    "lr": (float, None, "a finite number > 0"),
    "seed": (int, None, "a whole number >= 0"),
    "device": (str, DEVICES, None),
    "compile": (str, COMPILE_MODES, None),
    "patience": (int, None, "a whole number >= 0 (0 turns early stopping off)"),
    "train_on": (str, TRAIN_ON, None),
    "limit_train": (int, None, "a whole number >= 1"),
    "sample_epochs": (tuple, None, "comma-separated whole numbers >= 1, e.g. 1,10,25"),
    "data_dir": (str, None, "a folder path"),
}
_MINIMUM = {"latent_dim": 1, "samples": 1, "epochs": 1, "batch_size": 1, "seed": 0, "patience": 0, "limit_train": 1}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _fail(name: str, value, allowed: str) -> VaelabError:
    return VaelabError(f"{flag(name)} {value!r} is not allowed: use {allowed}")


def check_value(name: str, value):
    """Return `value` converted to the field's type, or raise VaelabError saying what is allowed."""
    kind, choices, allowed = _FIELDS[name]
    if value is None and name in ("limit_train", "data_dir"):
        return None
    if choices is not None:
        if not isinstance(value, str) or value not in choices:
            raise _fail(name, value, "one of " + ", ".join(choices))
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < _MINIMUM[name]:
            raise _fail(name, value, allowed)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise _fail(name, value, allowed)
        return float(value)
    if kind is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
            try:
                value = [int(part) for part in value]
            except ValueError:
                raise _fail(name, ",".join(map(str, value)), allowed) from None
        if not isinstance(value, (list, tuple)) or not value or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value
        ):
            raise _fail(name, value, allowed)
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise _fail(name, value, allowed)
    return value


def check_consistency(config: TrainConfig) -> None:
    if config.likelihood == "bernoulli" and config.binarize == "none":
        raise VaelabError("--likelihood bernoulli needs binarised pixels: a Bernoulli 'likelihood' of grayscale "
                          "pixels is not a likelihood; use --binarize dynamic/static, or --likelihood gaussian "
                          "or continuous-bernoulli with --binarize none")
    if config.likelihood != "bernoulli" and config.binarize != "none":
        raise VaelabError(f"--likelihood {config.likelihood} models grayscale pixels: use it with --binarize none")
    if config.objective == "iwae" and config.samples < 2:
        raise VaelabError("--objective iwae needs --samples k >= 2 (k = 1 is the ELBO)")


def read_toml(path: str | Path) -> dict:
    """A TOML config file's keys (dashes or underscores), checked against the known fields."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise VaelabError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise VaelabError(f"config file {path} is not valid TOML: {exc}") from None
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise VaelabError(f"config file {path}: unknown key {key!r}; known keys: {', '.join(_FIELDS)}")
        out[name] = value
    return out


def make_config(file_values: dict | None = None, flag_values: dict | None = None) -> TrainConfig:
    """Defaults, overridden by a config file's values, overridden by flags given on the command line."""
    merged = {**(file_values or {}), **{k: v for k, v in (flag_values or {}).items() if v is not None}}
    checked = {}
    for name, value in merged.items():
        if name not in _FIELDS:
            raise VaelabError(f"unknown setting {name!r}; known: {', '.join(_FIELDS)}")
        checked[name] = check_value(name, value)
    config = TrainConfig(**checked)
    check_consistency(config)
    return config


def config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a stored config (config.json), with the same checks as user input."""
    return make_config(values, None)


FIELD_NAMES = tuple(_FIELDS)
