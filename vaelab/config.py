"""Training settings: each one defined once, in `TrainConfig`'s fields, read from defaults < TOML file < flags.

A field's `setting(...)` holds its type, default, allowed values, limits and help; the dataclass,
the TOML reader, the command line's flags (`cli/arguments.py`) and the validation all come from it. Sizes and
counts have upper limits, so a typo cannot ask for terabytes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .data import BINARIZE_MODES, DATASETS
from .data.user import is_user_dataset
from .errors import VaelabError
from .models import ACTIVATIONS, FAMILIES, INFERENCES, LIKELIHOODS, NETWORKS, POSTERIORS, PRIORS, family_settings
from .runtime.compilation import COMPILE_MODES
from .runtime.precision import PRECISIONS


@dataclass(frozen=True)
class Setting:
    """One setting: its type, limits and help. `kind` is int, float, str, bool or tuple (of whole numbers)."""

    kind: type
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False  # None is allowed (and means "not set")
    group: str = "training"  # where `vaelab train --help` lists it: one of GROUPS
    registry: dict | None = None  # choices that grow as entries are registered (the model families)
    changes_on_resume: bool = False  # may differ from the stored value on --resume
    example: str = ""
    describe: str = ""  # what is allowed, in words, where the kind alone does not say

    def options(self) -> tuple[str, ...] | None:
        """The allowed values of a setting with choices, as they are now (None: any value of its kind)."""
        return tuple(self.registry) if self.registry is not None else self.choices

    def allowed(self) -> str:
        """What is allowed, in words, for error messages."""
        if self.describe:
            return self.describe
        if self.options() is not None:
            return "one of " + ", ".join(self.options())
        if self.kind is bool:
            return "true or false"
        if self.kind is float:
            return f"a finite number > {self.minimum:g} and <= {self.maximum:g}"
        if self.kind is str:
            return "a folder path"
        span = f">= {self.minimum}" if self.maximum is None else f"from {self.minimum} to {self.maximum:,}"
        if self.kind is tuple:
            return f"comma-separated whole numbers {span}, e.g. {self.example}"
        return f"a whole number {span}"


def setting(kind: type, default, help: str, **limits) -> dataclasses.Field:
    return field(default=default, metadata={"setting": Setting(kind, help, **limits)})


# `vaelab train --help` lists the settings in these groups, in this order
GROUPS = {"data": "the data", "model": "the model (each family takes the settings it names)",
          "training": "training", "run": "running the run"}
MAX_WIDTH = 10_000  # latent size and hidden widths: a 10,000 x 10,000 layer is 400 MB, 1.6 GB with Adam's moments
OBJECTIVES = ("elbo", "iwae")
DEVICES = ("auto", "cpu", "cuda")
TRAIN_ON = ("train", "train+valid")
LR_SCHEDULES = ("constant", "cosine")
LABELLED_BATCH = 100  # labelled images per semi-supervised step: Maaloe et al.'s, and all of 100 labels every step
FOLDERS = ("data_dir", "cache_dir")  # stored as absolute paths: the run directory works from any folder


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Stored as the run's config.json."""

    model: str = setting(str, "cvae", "the model family: vae, cvae (class-conditional), m2 (semi-supervised) or one "
                         "registered with vaelab.models.register_family",
                         registry=FAMILIES, group="model")
    network: str = setting(str, "mlp", "the encoder and decoder networks", choices=tuple(NETWORKS),
                           group="model")
    dataset: str = setting(str, "mnist", "mnist, fashion-mnist, an .npz file (images, labels) or a folder with a "
                           "subfolder of PNG images per class",
                           describe=f"one of {', '.join(DATASETS)}, an .npz file or a folder of class subfolders", group="data")
    latent_dim: int = setting(int, 40, "latent size d", minimum=1, maximum=MAX_WIDTH, group="model")
    latent_dims: tuple[int, ...] | None = setting(tuple, None, "sizes of a hierarchy's stochastic layers, z_1 (read by "
                                                  "the decoder) first, e.g. 64,32 (instead of --latent-dim)",
                                                  minimum=1, maximum=MAX_WIDTH, optional=True, group="model",
                                                  example="64,32")
    inference: str = setting(str, "top-down", "how q infers a hierarchy (--latent-dims): top-down (the ladder VAE's "
                             "precision-weighted merge, Sønderby et al.) or bottom-up (Burda et al.)",
                             choices=INFERENCES, group="model")
    aux_dim: int | None = setting(int, None, "size of the auxiliary latent a (--model adgm; default: the latent "
                                  "size)", minimum=1, maximum=MAX_WIDTH, optional=True, group="model")
    hidden: tuple[int, ...] = setting(tuple, (500, 500), "hidden widths, e.g. 500,500 (encoder; the decoder "
                                      "mirrors it)", minimum=1, maximum=MAX_WIDTH, group="model",
                                      example="500,500")
    activation: str = setting(str, "relu", "relu, tanh, softplus, elu or gelu", choices=tuple(ACTIVATIONS),
                              group="model")
    channels: int = setting(int, 32, "feature maps of the conv and resnet networks (conv doubles them once)",
                            minimum=1, maximum=1024, group="model")
    depth: int | None = setting(int, None, "convolutions (conv: 1) or residual blocks (resnet: 2) per resolution",
                                minimum=1, maximum=64, optional=True, group="model")
    likelihood: str = setting(str, "bernoulli", "bernoulli (binarised data), gaussian or continuous-bernoulli "
                              "(grayscale)", choices=LIKELIHOODS, group="model")
    posterior: str = setting(str, "gaussian", "q(z | x): gaussian (one diagonal Gaussian) or iaf (the Gaussian's "
                             "draw through inverse autoregressive flow steps fed a context from the encoder)",
                             choices=POSTERIORS, group="model")
    flow_steps: int = setting(int, 2, "IAF steps of --posterior iaf", minimum=1, maximum=64, group="model")
    flow_hidden: int = setting(int, 320, "hidden units of each flow step's networks (the IAF's MADEs and context, "
                               "the flow prior's coupling layers)", minimum=1, maximum=MAX_WIDTH, group="model")
    prior: str = setting(str, "standard", "p(z): standard (N(0, I)), vamp (the VampPrior, a mixture of the "
                         "encoder's posteriors at learned pseudo-inputs) or flow (a RealNVP flow from N(0, I))",
                         choices=PRIORS, group="model")
    pseudo_inputs: int = setting(int, 500, "pseudo-inputs K of the VampPrior", minimum=1, maximum=10_000,
                                 group="model")
    prior_flow_steps: int = setting(int, 4, "affine coupling layers of --prior flow", minimum=1, maximum=64,
                                    group="model")
    binarize: str = setting(str, "dynamic", "dynamic (fresh draw each epoch), static (drawn once) or none "
                            "(grayscale)", choices=BINARIZE_MODES, group="data")
    objective: str = setting(str, "elbo", "elbo (SGVB) or iwae (importance-weighted bound)", choices=OBJECTIVES)
    samples: int = setting(int, 1, "samples per image: L for the ELBO, k for IWAE", minimum=1, maximum=10_000)
    epochs: int = setting(int, 100, "maximum number of epochs", minimum=1, maximum=100_000, changes_on_resume=True)
    batch_size: int = setting(int, 128, "images per step", minimum=1, maximum=100_000)
    lr: float = setting(float, 1e-3, "Adam learning rate", minimum=0.0, maximum=10.0)
    lr_schedule: str = setting(str, "constant", "the learning rate over the epochs: constant, or cosine (from "
                               "--lr down to --lr / 100 at the last epoch)", choices=LR_SCHEDULES)
    warmup: int = setting(int, 0, "KL warm-up: the weight of log p(z) - log q(z | x) rises linearly from 0 to 1 "
                          "over this many epochs (0: none)", minimum=0, maximum=100_000)
    clip_grad_norm: float | None = setting(float, None, "scale every step's gradients down to this total norm "
                                           "where it is larger (default: no clipping)", minimum=0.0, maximum=1e9,
                                           optional=True)
    beta: float = setting(float, 1.0, "the weight of the KL terms in what is maximised (β-VAE: above 1); the "
                          "logged bound stays the true ELBO", minimum=0.0, maximum=1000.0)
    seed: int = setting(int, 0, "random seed (initialisation, order, binarisation, noise)", minimum=0,
                        maximum=2**62)
    device: str = setting(str, "auto", "auto, cpu or cuda", choices=DEVICES, changes_on_resume=True, group="run")
    compile: str = setting(str, "auto", "run the training step through torch.compile: on, off, or auto (for runs "
                           "of 4,000+ steps)", choices=COMPILE_MODES, changes_on_resume=True, group="run")
    precision: str = setting(str, "float32", "the training step's products: float32, bf16 (the networks' matrix "
                             "products and convolutions in bfloat16, everything else in float32) or tf32 (CUDA's "
                             "TensorFloat-32); validation and evaluation stay float32", choices=PRECISIONS,
                             changes_on_resume=True, group="run")
    time_limit: float | None = setting(float, None, "stop after the epoch that brings this call's training past "
                                       "this many minutes (resume continues)", minimum=0.0, maximum=100_000.0,
                                       optional=True, changes_on_resume=True, group="run")
    patience: int = setting(int, 0, "stop after this many epochs without a better validation ELBO (0: never)",
                            minimum=0, maximum=100_000, changes_on_resume=True, group="run")
    train_on: str = setting(str, "train", "train (50,000 images) or train+valid (60,000: the training and validation "
                            "images together)",
                            choices=TRAIN_ON, group="data")
    limit_train: int | None = setting(int, None, "use only the first N training images (quick experiments)",
                                      minimum=1, maximum=10**9, optional=True, group="data")
    sample_epochs: tuple[int, ...] = setting(tuple, (1, 10, 25, 50, 100), "epochs after which to save a sample "
                                             "grid, e.g. 1,10,25 (the last is always saved)", minimum=1,
                                             maximum=100_000, changes_on_resume=True, example="1,10,25", group="run")
    labels: int | None = setting(int, None, "semi-supervised (--model m2 or adgm): keep the labels of only N training "
                                 "images, balanced over the classes (default: every label)", minimum=1,
                                 maximum=10**9, optional=True,
                                 describe="a whole number of labelled training images, at least the number of "
                                 "classes", group="data")
    labelled_batch: int | None = setting(int, None, "semi-supervised (with --labels): labelled images in every step "
                                         "beside --batch-size unlabelled ones, cycling through the labelled set "
                                         f"(default: {LABELLED_BATCH}, or every label if fewer; 0: each labelled "
                                         "image once per epoch, spread over the steps, as runs made before it)",
                                         minimum=0, maximum=100_000, optional=True, group="data")
    label_seed: int = setting(int, 0, "which images keep their labels (with --labels)", minimum=0, maximum=2**62, group="data")
    alpha: float | None = setting(float, None, "weight of log q(y | x) on the mean over a step's labelled images "
                                  "(m2, adgm); default: 0.1 x training images / labelled images, Kingma et al.'s and "
                                  "Maaloe et al.'s (50 with 100 labels of 50,000)",
                                  minimum=0.0, maximum=1e6, optional=True, group="model")
    data_dir: str | None = setting(str, None, "folder with the IDX files (else $VAELAB_DATA, the cache, then "
                                   "downloads)", optional=True, group="data")
    cache_dir: str | None = setting(str, None, "the data cache folder (default $VAELAB_CACHE or ~/.cache/vaelab); "
                                    "evaluate, sample, report and explore read the test images from it too",
                                    optional=True, changes_on_resume=True, group="data")
    tensorboard: bool = setting(bool, False, "also write TensorBoard event files to DIR/tensorboard/ (needs the "
                                "tensorboard extra)", changes_on_resume=True, group="run")

    def family_settings(self) -> dict:
        """The settings the chosen family takes (`models.family_settings`), as keyword arguments of
        `models.build_model`: it is handed these and no others."""
        return {name: getattr(self, name) for name in family_settings(self.model)}

    @property
    def bound_key(self) -> str:
        """The metrics.jsonl key of the training bound: train_elbo or train_iw_bound."""
        return "train_elbo" if self.objective == "elbo" else "train_iw_bound"

    @property
    def bound_name(self) -> str:
        return "ELBO" if self.objective == "elbo" else f"IW bound (k = {self.samples})"

    def labelled_batch_size(self) -> int:
        """Labelled images per step of a semi-supervised run (`training.epoch.batch_plan`): --labelled-batch,
        at most --labels; 0 without --labels, or for the spread plan."""
        if self.labels is None:
            return 0
        return min(LABELLED_BATCH if self.labelled_batch is None else self.labelled_batch, self.labels)

    def to_dict(self) -> dict:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in dataclasses.fields(TrainConfig)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flags_table(settings: dict[str, Setting], defaults: dict[str, object]) -> str:
    """The `vaelab train` flags of `settings` as a Markdown table, one row per setting, in their order.

    Columns: the flag, its default (`defaults[name]`, as it would be typed; "not set" for None), what
    is allowed (`Setting.allowed()`), the help, and whether it may change on `--resume`. Pure: the docs
    site builds its flag table with it (`docs/hooks.py`), so the page cannot drift from the parser.
    """
    def cell(text: str) -> str:  # a table cell: no pipes that would split it, no tags
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

    def shown(value) -> str:
        if value is None:
            return "not set"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, (tuple, list)):
            return "`" + ",".join(map(str, value)) + "`"
        if isinstance(value, float):
            return f"`{value:g}`"
        return f"`{value}`"

    rows = ["| flag | default | allowed | what | may change on `--resume` |", "|---|---|---|---|---|"]
    for name, declared in settings.items():
        name_flag = f"`{flag(name)}` / `--no-{flag(name)[2:]}`" if declared.kind is bool else f"`{flag(name)}`"
        rows.append(f"| {name_flag} | {shown(defaults[name])} | {cell(declared.allowed())} | {cell(declared.help)} | "
                    f"{'yes' if declared.changes_on_resume else 'no'} |")
    return "\n".join(rows) + "\n"


def _fail(name: str, value, allowed: str) -> VaelabError:
    return VaelabError(f"{{{name}}} {value!r} is not allowed: use {allowed}")


def _whole(value, setting: Setting, limits: bool = True) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int) and value >= setting.minimum
            and (not limits or setting.maximum is None or value <= setting.maximum))


def check_value(name: str, value, limits: bool = True):
    """Return `value` converted to the setting's type, or raise VaelabError saying what is allowed.

    limits=False skips the upper limits on sizes and counts (for a stored config, see `runs.stored_config`).
    """
    declared = SETTINGS[name]
    if value is None and declared.optional:
        return None
    if declared.options() is not None:
        if not isinstance(value, str) or value not in declared.options():
            raise _fail(name, value, declared.allowed())
        return value
    if declared.kind is bool:
        if not isinstance(value, bool):
            raise _fail(name, value, declared.allowed())
        return value
    if declared.kind is int:
        if not _whole(value, declared, limits):
            raise _fail(name, value, declared.allowed())
        return value
    if declared.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not declared.minimum < value <= declared.maximum:
            raise _fail(name, value, declared.allowed())
        return float(value)
    if declared.kind is tuple:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                value = [int(part) for part in parts]
            except ValueError:
                raise _fail(name, ",".join(parts), declared.allowed()) from None
        if not isinstance(value, (list, tuple)) or not value or len(value) > 1000 or \
                not all(_whole(v, declared, limits) for v in value):
            raise _fail(name, value, declared.allowed())
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise _fail(name, value, declared.allowed())
    if name == "dataset" and value not in DATASETS:
        if not is_user_dataset(value):
            raise _fail(name, value, declared.allowed())
        return str(Path(value).expanduser().resolve())  # the run directory works from any folder
    if name in FOLDERS:
        return str(Path(value).expanduser().resolve())
    return value


def check_consistency(config: TrainConfig) -> None:
    taken = family_settings(config.model)
    if "likelihood" in taken and config.likelihood == "bernoulli" and config.binarize == "none":
        raise VaelabError("{likelihood} bernoulli needs binarised pixels: a Bernoulli 'likelihood' of grayscale "
                          "pixels is not a likelihood; use {binarize} dynamic/static, or {likelihood} gaussian "
                          "or continuous-bernoulli with {binarize} none")
    if "likelihood" in taken and config.likelihood != "bernoulli" and config.binarize != "none":
        raise VaelabError(f"{{likelihood}} {config.likelihood} models grayscale pixels: use it with {{binarize}} none")
    if FAMILIES[config.model].binary_pixels and config.binarize == "none":
        raise VaelabError(f"{{model}} {config.model} models binarised pixels (Bernoulli): use {{binarize}} dynamic "
                          "or static")
    defaults = TrainConfig()
    for name, needs, value in (("flow_steps", "posterior", "iaf"), ("prior_flow_steps", "prior", "flow")):
        if name in taken and getattr(config, name) != getattr(defaults, name) and getattr(config, needs) != value:
            raise VaelabError(f"{{{name}}} is a setting of {{{needs}}} {value}, not of {{{needs}}} "
                              f"{getattr(config, needs)}: drop it, or use {{{needs}}} {value}")
    layers = config.latent_dims or (config.latent_dim,)
    if config.latent_dims is not None and "latent_dims" in taken:
        if config.latent_dim != defaults.latent_dim:
            raise VaelabError("{latent_dims} gives every layer's size, z_1's too: drop {latent_dim}")
        if len(layers) > 1 and config.posterior != "gaussian":
            raise VaelabError(f"{{posterior}} {config.posterior} is for one stochastic layer: use it without "
                              "{latent_dims}, or a hierarchy with {posterior} gaussian")
    if "inference" in taken and len(layers) < 2 and config.inference != defaults.inference:
        raise VaelabError("{inference} is how a hierarchy is inferred: use it with {latent_dims} of two or more sizes")
    offered = FAMILIES[config.model].priors
    if "prior" in taken and config.prior not in offered:
        raise VaelabError(f"{{model}} {config.model} takes {{prior}} " + " or ".join(offered) + f", not {config.prior}")
    if "prior" in taken and config.prior == "flow" and layers[-1] < 2:
        raise VaelabError("{prior} flow couples half of z with the other half: it needs a top layer of 2 or more "
                          "({latent_dim} or the last of {latent_dims})")
    if config.labelled_batch is not None and config.labels is None:
        raise VaelabError("{labelled_batch} sizes the labelled batch of a semi-supervised run: use it with {labels}")
    if config.labels is not None and not hasattr(FAMILIES[config.model], "classifier"):
        inferring = " or ".join(name for name, family in FAMILIES.items() if hasattr(family, "classifier"))
        raise VaelabError(f"{{labels}} needs a model that infers missing labels ({{model}} {inferring}); {{model}} "
                          f"{config.model} trains on every label: drop {{labels}}")
    for name, declared in SETTINGS.items():
        if declared.group == "model" and name != "model" and name not in taken and getattr(config, name) != getattr(defaults, name):
            raise VaelabError(f"{{model}} {config.model} does not take {{{name}}}: drop it (its settings: "
                              + ", ".join("{" + n + "}" for n in taken) + ")")
    trains_with = FAMILIES[config.model].objectives
    if config.objective not in trains_with:
        raise VaelabError(f"{{model}} {config.model} trains with {{objective}} " + " or ".join(trains_with)
                          + f", not {config.objective}")
    if config.objective == "iwae" and config.samples < 2:
        raise VaelabError("{objective} iwae needs {samples} k >= 2 (k = 1 is the ELBO)")


def read_toml(path: str | Path) -> dict:
    """A TOML config file's keys (dashes or underscores), checked against the known settings."""
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
        if name not in SETTINGS:
            raise VaelabError(f"config file {path}: unknown key {key!r}; known keys: {', '.join(SETTINGS)}")
        out[name] = value
    return out


def make_config(file_values: dict | None = None, flag_values: dict | None = None, limits: bool = True) -> TrainConfig:
    """Defaults, overridden by a config file's values, overridden by flags given on the command line."""
    merged = {**(file_values or {}), **{k: v for k, v in (flag_values or {}).items() if v is not None}}
    checked = {}
    for name, value in merged.items():
        if name not in SETTINGS:
            raise VaelabError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
        checked[name] = check_value(name, value, limits)
    config = TrainConfig(**checked)
    check_consistency(config)
    return config


def config_from_dict(values: dict, limits: bool = True) -> TrainConfig:
    """Rebuild a stored config (config.json), with the same checks as user input."""
    return make_config(values, None, limits)
