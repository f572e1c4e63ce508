"""A run's settings, read from defaults < TOML file < flags (or `vaelab.train`'s keywords): `TrainConfig`.

The data, training and running settings are `TrainConfig`'s fields, each with its `setting(...)`:
type, default, allowed values, limits and help. The model's settings belong to its family and its
network (`vaelab.models.settings_of`: each declares its own `Setting`s beside it) and are held in
`TrainConfig.model_settings`, only those the run's family and network take. The dataclass, the TOML
reader, the command line's flags (`cli/arguments.py`), `vaelab.train`'s keywords and the validation
all come from these declarations. Sizes and counts have upper limits, so a typo cannot ask for terabytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .data import BINARIZE_MODES, DATASETS
from .data.user import is_user_dataset
from .errors import VaelabError
from .models import (FAMILIES, GIVEN, Setting, check_model_settings, check_stored_registered, imports_of,
                     model_settings_owners, settings_of)
from .models.settings import check_value as check_setting, stored
from .runtime.compilation import COMPILE_MODES
from .runtime.precision import PRECISIONS


def setting(kind: type, default, help: str, group: str = "training", **limits) -> dataclasses.Field:
    return field(default=default, metadata={"setting": Setting(kind, default, help, group=group, **limits)})


# `vaelab train --help` lists the settings in these groups, in this order
GROUPS = {"data": "the data", "model": "the model (each family takes the settings listed for it below)",
          "training": "training", "run": "running the run"}
OBJECTIVES = ("elbo", "iwae")
ENCODER_INPUTS = ("target", "grayscale")
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
    dataset: str = setting(str, "mnist", "mnist, fashion-mnist, an .npz file (images, labels) or a folder with a "
                           "subfolder of PNG images per class",
                           describe=f"one of {', '.join(DATASETS)}, an .npz file or a folder of class subfolders", group="data")
    binarize: str = setting(str, "dynamic", "dynamic (fresh draw each epoch), expected (the bound averaged over "
                            "every draw, exactly: the Bernoulli scores the gray levels; needs --encoder-input "
                            "grayscale), static (drawn once) or none (grayscale)", choices=BINARIZE_MODES, group="data")
    encoder_input: str = setting(str, "target", "what the networks that read an image (q, the classifier) are given: "
                                 "target (the pixels the likelihood scores, binarised where they are) or grayscale "
                                 "(the gray levels binarised pixels are drawn from; the likelihood and every bound "
                                 "and log p(x) stay those of the binarised images)", choices=ENCODER_INPUTS,
                                 group="data")
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
    labels: int | None = setting(int, None, "semi-supervised (--model m2, adgm or sdgm): keep the labels of only N "
                                 "training images, balanced over the classes (default: every label)", minimum=1,
                                 maximum=10**9, optional=True,
                                 describe="a whole number of labelled training images, at least the number of "
                                 "classes", group="data")
    labelled_batch: int | None = setting(int, None, "semi-supervised (with --labels): labelled images in every step "
                                         "beside --batch-size unlabelled ones, cycling through the labelled set "
                                         f"(default: {LABELLED_BATCH}, or every label if fewer; 0: each labelled "
                                         "image once per epoch, spread over the steps, as runs made before it)",
                                         minimum=0, maximum=100_000, optional=True, group="data")
    label_seed: int = setting(int, 0, "which images keep their labels (with --labels)", minimum=0, maximum=2**62, group="data")
    data_dir: str | None = setting(str, None, "folder with the IDX files (else $VAELAB_DATA, the cache, then "
                                   "downloads)", optional=True, group="data", describe="a folder path")
    cache_dir: str | None = setting(str, None, "the data cache folder (default $VAELAB_CACHE or ~/.cache/vaelab); "
                                    "evaluate, sample, report and explore read the test images from it too",
                                    optional=True, changes_on_resume=True, group="data", describe="a folder path")
    tensorboard: bool = setting(bool, False, "also write TensorBoard event files to DIR/tensorboard/ (needs the "
                                "tensorboard extra)", changes_on_resume=True, group="run")
    # the settings of the family and its network, name -> value (`models.settings_of`), and the
    # modules outside vaelab that registered them (what loading the run needs imported)
    model_settings: dict = field(default=None, metadata={"model": True})
    imports: tuple[str, ...] = field(default=(), metadata={"model": True})

    def __post_init__(self):
        """Without model_settings, the family's defaults (a config made in code; `make_config` checks)."""
        if self.model_settings is None:
            defaults = {name: declared.default for name, declared in settings_of(self.model).items()}
            object.__setattr__(self, "model_settings", defaults)

    def __getattr__(self, name: str):
        """A model setting read as an attribute (`config.latent_dim`), for a family that takes it."""
        settings = self.__dict__.get("model_settings") or {}
        if name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__} of model {self.__dict__.get('model')!r} has no setting {name!r}")

    def get(self, name: str, default=None):
        """The value of setting `name`, a training or a model setting; `default` where the run has no such setting."""
        if name in SETTINGS:
            return getattr(self, name)
        return self.model_settings.get(name, default)

    def family_settings(self) -> dict:
        """The settings of the family and its network, as keyword arguments of `models.build_model`:
        it is handed these and no others."""
        return dict(self.model_settings)

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
        """config.json's form: one flat object of the training settings, the model's settings and,
        where there are any, the modules that registered the family and network (`imports`)."""
        values = {name: stored(getattr(self, name)) for name in SETTINGS}
        values.update({name: stored(value) for name, value in self.model_settings.items()})
        if self.imports:
            values["imports"] = list(self.imports)
        return values


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in dataclasses.fields(TrainConfig)
                                if "setting" in f.metadata}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cell(text: str) -> str:
    """A Markdown table cell: no pipes that would split it, no tags."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _shown(value) -> str:
    """A default as it would be typed, for the flag tables ("not set" for None)."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return "`" + ",".join(map(str, value)) + "`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def flags_table(settings: dict[str, Setting], defaults: dict[str, object]) -> str:
    """The `vaelab train` flags of `settings` as a Markdown table, one row per setting, in their order.

    Columns: the flag, its default (`defaults[name]`, as it would be typed; "not set" for None), what
    is allowed (`Setting.allowed()`), the help, and whether it may change on `--resume`. Pure: the docs
    site builds its flag table with it (`docs/hooks.py`), so the page cannot drift from the parser.
    """
    rows = ["| flag | default | allowed | what | may change on `--resume` |", "|---|---|---|---|---|"]
    for name, declared in settings.items():
        name_flag = f"`{flag(name)}` / `--no-{flag(name)[2:]}`" if declared.kind is bool else f"`{flag(name)}`"
        rows.append(f"| {name_flag} | {_shown(defaults[name])}{families_default_words(name)} | "
                    f"{_cell(declared.allowed())} | {_cell(declared.help)} | "
                    f"{'yes' if declared.changes_on_resume else 'no'} |")
    return "\n".join(rows) + "\n"


def model_flags() -> dict[str, list[tuple[str, Setting]]]:
    """The model settings that are flags of `vaelab train`: name -> [(owner, Setting)] of every
    registered family and network (`models.model_settings_owners`) but the given network's, whose
    modules are handed over in Python only."""
    flags = {}
    for name, declared in model_settings_owners().items():
        declared = [(owner, setting) for owner, setting in declared if owner != f"--network {GIVEN}"]
        if declared and name not in SETTINGS:
            flags[name] = declared
    return flags


def owners_words(owners, code: bool = False) -> str:
    """("--model vae", "--model cvae", "--network mlp") -> "--model vae, cvae and --network mlp" (each
    part in backticks with code=True)."""
    by_kind: dict[str, list[str]] = {}
    for owner in owners:
        kind, who = owner.split(" ", 1)
        by_kind.setdefault(kind, []).append(who)
    quote = "`" if code else ""
    return " and ".join(f"{quote}{kind} {', '.join(who)}{quote}" for kind, who in by_kind.items())


def defaults_words(declared: list[tuple[str, Setting]], shown=lambda value: _shown(value).strip("`")) -> str:
    """A model setting's default as its owners declare it: "40", or "1 (conv); 2 (resnet)" where they differ."""
    defaults: dict[str, list[str]] = {}
    for owner, setting in declared:
        defaults.setdefault(shown(setting.default), []).append(owner.split(" ", 1)[1])
    if len(defaults) == 1:
        return next(iter(defaults))
    return "; ".join(f"{value} ({', '.join(who)})" for value, who in defaults.items())


def families_default_words(name: str) -> str:
    """"; `200` with `--model m2, adgm, sdgm`" for each default of its own that families give setting
    `name` (`Family.defaults`), the families that give the same one together, for the flag tables;
    "" where none does."""
    by_value: dict[str, list[str]] = {}
    for model, family in FAMILIES.items():
        if name in (getattr(family, "defaults", None) or {}):
            by_value.setdefault(_shown(family.defaults[name]), []).append(model)
    return "".join(f"; {shown} with `--model {', '.join(models)}`" for shown, models in by_value.items())


def model_flags_table() -> str:
    """The `vaelab train` flags of the model settings every registered family and network declare
    (`model_flags`), as a Markdown table: the flag, who takes it (`--model vae, cvae`, `--network
    conv`), its default (per owner where they differ), what is allowed and the help."""
    rows = ["| flag | taken by | default | allowed | what |", "|---|---|---|---|---|"]
    for name, declared in model_flags().items():
        first = declared[0][1]
        shown_flag = f"`{flag(name)}` / `--no-{flag(name)[2:]}`" if first.kind is bool else f"`{flag(name)}`"
        rows.append(f"| {shown_flag} | {owners_words([owner for owner, _ in declared], code=True)} | "
                    f"{defaults_words(declared, _shown)}{families_default_words(name)} | {_cell(first.allowed())} | "
                    f"{_cell(first.help)} |")
    return "\n".join(rows) + "\n"


def check_value(name: str, value, limits: bool = True):
    """A training setting's `value` converted to its type, or VaelabError saying what is allowed
    (`models.settings.check_value`); a dataset file and the folders as absolute paths.

    limits=False skips the upper limits on sizes and counts (for a stored config, see `runs.stored_config`).
    """
    value = check_setting(name, SETTINGS[name], value, limits)
    if name == "dataset" and value not in DATASETS:
        if not is_user_dataset(value):
            raise VaelabError(f"{{dataset}} {value!r} is not allowed: use {SETTINGS['dataset'].allowed()}")
        return str(Path(value).expanduser().resolve())  # the run directory works from any folder
    if name in FOLDERS and value is not None:
        return str(Path(value).expanduser().resolve())
    return value


def check_consistency(config: TrainConfig) -> None:
    """VaelabError where the settings do not go together: the family's own rules
    (`Family.check_settings`), then those between the family and training; the family's objectives
    before the binarisation's rules, so that the more basic refusal is the one a user reads."""
    family = FAMILIES[config.model]
    if family.binary_pixels and config.binarize == "none":
        raise VaelabError(f"{{model}} {config.model} models binarised pixels (Bernoulli): use {{binarize}} dynamic "
                          "or static")
    trains_with = family.objectives
    if config.objective not in trains_with:
        raise VaelabError(f"{{model}} {config.model} trains with {{objective}} " + " or ".join(trains_with)
                          + f", not {config.objective}")
    if config.binarize == "expected" and config.encoder_input != "grayscale":
        raise VaelabError("{binarize} expected averages the bound over the binarisations of an image, which is exact "
                          "only where q reads its gray levels: add {encoder_input} grayscale, or use {binarize} dynamic")
    if config.binarize == "expected" and config.objective == "iwae":
        raise VaelabError("{binarize} expected averages the ELBO over the binarisations of an image; the IWAE bound's "
                          "log of a mean of weights does not average so: use {binarize} dynamic with {objective} iwae")
    family.check_settings(config.model_settings, config)
    if config.labelled_batch is not None and config.labels is None:
        raise VaelabError("{labelled_batch} sizes the labelled batch of a semi-supervised run: use it with {labels}")
    if config.labels is not None and not hasattr(FAMILIES[config.model], "classifier"):
        names = [name for name, family in FAMILIES.items() if hasattr(family, "classifier")]
        inferring = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise VaelabError(f"{{labels}} needs a model that infers missing labels ({{model}} {inferring}); {{model}} "
                          f"{config.model} trains on every label: drop {{labels}}")
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
        if name not in SETTINGS and name not in model_settings_owners():
            known = [*SETTINGS, *model_settings_owners()]
            raise VaelabError(f"config file {path}: unknown key {key!r}; known keys: {', '.join(known)}")
        out[name] = value
    return out


def family_defaults(model: str, network: str | None = None) -> dict:
    """The defaults family `model` gives to settings it does not declare (`Family.defaults`): those
    of the run, and those of its network (`network`, or its default one) that the network takes."""
    check_value("model", model)
    declared = getattr(FAMILIES[model], "defaults", None) or {}
    try:
        taken = settings_of(model, network if isinstance(network, str) else None)
    except VaelabError:  # an unknown network: refused, with what to do, where the settings are checked
        taken = settings_of(model)
    return {name: value for name, value in declared.items() if name in SETTINGS or name in taken}


def make_config(file_values: dict | None = None, flag_values: dict | None = None, limits: bool = True,
                imports: tuple[str, ...] | None = None) -> TrainConfig:
    """Defaults (the family's own first, `family_defaults`), overridden by a config file's values,
    overridden by flags given on the command line (a flag's None: not given). Training settings
    and the model's settings alike (the family's and its network's, checked by
    `models.check_model_settings`). imports: the modules a stored run names as registering
    its family and network (None: those that registered them in this process)."""
    merged = {**(file_values or {}), **{k: v for k, v in (flag_values or {}).items() if v is not None}}
    model = check_value("model", merged.pop("model", SETTINGS["model"].default), limits)
    merged = {**family_defaults(model, merged.get("network")), **merged}
    checked, model_values = {}, {}
    for name, value in merged.items():
        if name in SETTINGS:
            checked[name] = check_value(name, value, limits)
        elif name in model_settings_owners():
            model_values[name] = value
        else:
            raise VaelabError(f"unknown setting {name!r}; known: {', '.join([*SETTINGS, *model_settings_owners()])}")
    settings = check_model_settings(model, model_values, limits)
    found = imports_of(model, settings) if imports is None else tuple(imports)
    config = TrainConfig(model=model, **checked, model_settings=settings, imports=found)
    check_consistency(config)
    return config


def config_from_dict(values: dict, limits: bool = True) -> TrainConfig:
    """Rebuild a stored config (config.json's form, `TrainConfig.to_dict`), with the same checks as
    user input; a family or network not registered in this process is named with the modules that
    registered it (`models.check_registered`)."""
    values = dict(values)
    imports = values.pop("imports", None) or ()
    if not isinstance(imports, (list, tuple)) or not all(isinstance(module, str) for module in imports):
        raise VaelabError("{imports} must be a list of module names")
    check_stored_registered(values.get("model", SETTINGS["model"].default), values, tuple(imports))
    return make_config(values, None, limits, imports=tuple(imports))
