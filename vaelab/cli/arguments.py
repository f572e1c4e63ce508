"""The command line's grammar: every command's flags, their types and limits (`build_parser`).

A usage error is one line that says where to find help, and exit code 2. The training flags come
from the settings themselves (`config.SETTINGS`); what each command does is in `commands.py`.
"""

from __future__ import annotations

import argparse

from ..api import CHECKPOINTS
from ..config import DEVICES, GROUPS, SETTINGS, defaults_words, family_defaults, flag, model_flags, owners_words
from ..errors import VaelabError
from ..models import GIVEN, Setting, settings_of
from ..models.settings import MAX_WIDTH
from ..runtime.compilation import COMPILE_MODES

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to find help."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"vaelab: error: {message} (see: {self.prog} --help)\n")


MAX_IW_SAMPLES = 100_000  # K = 5,000 is the literature's figure; 100,000 already takes days on a CPU
MAX_IMAGES = 10_000  # pictures: images per grid
MAX_AIS_STEPS = 1_000_000  # AIS bridges; Wu et al. used up to 16,000


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _count(maximum: int, minimum: int = 1):
    """An argparse type: a whole number from `minimum` to `maximum`."""
    def parse(text: str) -> int:
        value = _int(text)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from {minimum} to {maximum:,}")
        return value
    return parse


def _port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 1 to 65535")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= SETTINGS["seed"].maximum:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 0 to {SETTINGS['seed'].maximum}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _class(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class (0, 1, ...)")
    return value


_FLAG_TYPES = {int: _int, float: _float}  # strings and lists are checked with the settings (config.check_value)


def build_parser(chosen: tuple[str | None, str | None] = (None, None)) -> ArgumentParser:
    """The `vaelab` parser. chosen: the --model and --network given (`chosen_model`): `vaelab train
    --help` then lists only the settings that family and network take (the others still parse,
    to be refused by name)."""
    parser = ArgumentParser(prog="vaelab", description="Variational autoencoders on MNIST-family images.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    data = commands.add_parser("data", help="fetch, verify and cache a dataset; print a summary")
    data.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
    data.add_argument("--data-dir", help="folder with the IDX files")
    data.add_argument("--cache-dir", help="cache folder (default $VAELAB_CACHE or ~/.cache/vaelab)")
    data.add_argument("--json", action="store_true", help="print the summary as JSON")

    train = commands.add_parser("train", help="train a model, writing a run directory")
    train.add_argument("--config", help="TOML file of settings (flags override it)")
    train.add_argument("--out", required=True, help="run directory to write")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    groups = {group: train.add_argument_group(f"settings of {words}") for group, words in GROUPS.items()}
    own = _chosen_defaults(*chosen)
    for name, setting in SETTINGS.items():
        _setting_flag(groups[setting.group], name, setting, f"default: {_shown(own.get(name, setting.default))}")
    taken = _taken(*chosen)
    for owners, names in _model_setting_groups().items():
        shown = taken is None or any(name in taken for name in names)
        group = train.add_argument_group("settings of " + owners_words(owners)) if shown else train
        for name in names:
            declared = model_flags()[name]
            default = "default: " + (_shown(own[name]) if name in own else defaults_words(declared))
            _setting_flag(group, name, declared[0][1], default, hidden=taken is not None and name not in taken)

    evaluate = commands.add_parser("evaluate", help="test-set ELBO, IS log-likelihood (and CVAE extras)")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--iw-samples", type=_count(MAX_IW_SAMPLES), default=1000,
                          help="importance samples K per image")
    evaluate.add_argument("--class-samples", type=_count(MAX_IW_SAMPLES), help="CVAE: samples per class for log p(x) "
                          "and accuracy (default K/10)")
    _checkpoint_flag(evaluate)
    evaluate.add_argument("--seed", type=_seed, default=0)
    _device_flag(evaluate)
    evaluate.add_argument("--compile", default="auto", choices=COMPILE_MODES,
                          help="evaluate the importance weights through torch.compile (auto: for large K)")
    evaluate.add_argument("--ais", type=_count(MAX_AIS_STEPS), metavar="STEPS",
                          help="also annealed importance sampling from q to the posterior with this many bridges "
                               "(HMC transitions; eval.json's ais)")
    evaluate.add_argument("--leapfrog", type=_count(1000), help="AIS: leapfrog steps per HMC transition (default 10)")
    evaluate.add_argument("--chains", type=_count(10_000, minimum=2),
                          help="AIS: chains per test image and class (default 16; 2 at least, for a standard error)")
    evaluate.add_argument("--ais-images", type=_count(MAX_IMAGES), metavar="N",
                          help="AIS: the first N test images only (default: all)")
    evaluate.add_argument("--bdmc", type=_count(MAX_IMAGES), metavar="N",
                          help="also bidirectional Monte Carlo on N images simulated from the model: AIS's lower "
                               "and upper bounds and the width between them (eval.json's bdmc), with the steps of "
                               "--ais (1000 without it), --leapfrog and --chains")
    evaluate.add_argument("--information-images", type=_count(MAX_IMAGES, minimum=2), metavar="N",
                          help="I(x; latents) on the first N test images (default: all for Gaussian layers, one or "
                               "a hierarchy; 1,000 for an auxiliary latent, 100 with an IAF); at most log N nats")
    evaluate.add_argument("--quality", action="store_true",
                          help="also judge samples (eval.json's quality): class consistency, prediction entropy and "
                               "the Fréchet distance in the features of a small classifier of the dataset, trained "
                               "once (20 s for MNIST on 2 cores) and kept in vaelab's data cache")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--no-progress", action="store_true")

    sample = commands.add_parser("sample", help="a grid of generated images")
    sample.add_argument("run", help="run directory")
    sample.add_argument("-o", "--output", required=True, help="PNG file to write")
    sample.add_argument("--per-class", type=_count(1000), default=8, help="class-conditional: images per class")
    sample.add_argument("--digit", type=_class, help="class-conditional: only this class")
    sample.add_argument("-n", type=_count(MAX_IMAGES), default=64, help="without classes: number of images")
    sample.add_argument("--seed", type=_seed, default=0)
    _checkpoint_flag(sample)
    _device_flag(sample)

    reconstruct = commands.add_parser("reconstruct", help="test images above their reconstructions")
    reconstruct.add_argument("run", help="run directory")
    reconstruct.add_argument("-o", "--output", required=True, help="PNG file to write")
    reconstruct.add_argument("-n", type=_count(MAX_IMAGES), default=10, help="number of test images")
    reconstruct.add_argument("--seed", type=_seed, default=0, help="which test images (random choice)")
    _checkpoint_flag(reconstruct)
    _device_flag(reconstruct)
    report = commands.add_parser("report", help="an HTML (and PDF) report of one or more runs")
    report.add_argument("runs", nargs="+", help="run directories; several get a comparison section")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--pdf", help="also write this PDF file")
    report.add_argument("--title", help="the report's title")
    _device_flag(report)

    explore = commands.add_parser("explore", help="a local web page to move through trained models' z (the "
                                  "explore extra)")
    explore.add_argument("runs", nargs="+", help="run directories; several are shown side by side")
    explore.add_argument("--port", type=_port, default=8765, help="port to serve on (8765)")
    explore.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1: this machine only)")
    _device_flag(explore)

    study = commands.add_parser("study", help="train and compare VAEs of several latent sizes (k = 3 against k = 20), one report")
    study.add_argument("--out", required=True, help="folder for the runs and the report")
    study.add_argument("--latent-dims", type=_int_list, default=(3, 20), help="latent sizes to compare (3,20)")
    study.add_argument("--epochs", type=_int, default=100, help="maximum epochs per run (100)")
    study.add_argument("--patience", type=_int, default=10, help="early stopping on validation ELBO (10)")
    study.add_argument("--iw-samples", type=_count(MAX_IW_SAMPLES), default=1000, help="importance samples K (1000)")
    study.add_argument("--limit-train", type=_int, help="only the first N training images")
    study.add_argument("--seed", type=_seed, default=0)
    _device_flag(study)
    study.add_argument("--no-progress", action="store_true")
    for command in commands.choices.values():
        command.add_argument("--import", dest="imports", action="append", metavar="MODULE", default=[],
                             help="import MODULE first: one that registers a family or network of your own "
                                  "(vaelab.register_family, vaelab.register_network); repeat it for several. "
                                  "A run made with one needs it on every command that reads the run")
    return parser


def modules_to_import(argv: list[str]) -> list[str]:
    """The MODULEs of every --import MODULE (or --import=MODULE) in argv, in order: imported before
    the parser is built, so that what they register is among its choices and flags."""
    found = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    found.add_argument("--import", dest="imports", action="append", default=[])
    return found.parse_known_args(argv)[0].imports


def _shown(value) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _setting_flag(group, name: str, setting: Setting, default: str, hidden: bool = False) -> None:
    """A setting's flag: --name VALUE (read as the setting's kind), or --name / --no-name for a bool;
    hidden: parsed, not listed in --help. A setting whose choices are a registry lists them as they are."""
    default = "" if "default" in setting.help else f" ({default})"
    if setting.registry is not None:
        default += "; registered now: " + ", ".join(name for name in setting.registry if name != GIVEN)
    if setting.kind is bool:
        group.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                           help=argparse.SUPPRESS if hidden else setting.help + default)
    else:
        group.add_argument(flag(name), dest=name, type=_FLAG_TYPES.get(setting.kind, str), default=None,
                           help=argparse.SUPPRESS if hidden else setting.help + default)


def _taken(model: str | None, network: str | None) -> set[str] | None:
    """The model settings family `model` with `network` takes (None: no family chosen, or not a registered one)."""
    if model is None:
        return None
    try:
        return set(settings_of(model, network))
    except VaelabError:
        return None


def _chosen_defaults(model: str | None, network: str | None) -> dict:
    """The defaults a run of family `model` with `network` gets where a setting is not given: its
    settings' and its network's, and the family's own for the others (`config.family_defaults`);
    {} with no family chosen, or not a registered one."""
    if model is None:
        return {}
    try:
        declared = {name: setting.default for name, setting in settings_of(model, network).items()}
        return {**declared, **family_defaults(model, network)}
    except VaelabError:
        return {}


def chosen_model(argv: list[str]) -> tuple[str | None, str | None]:
    """The --model and --network of a `vaelab train` command line, where given (for its --help)."""
    found = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    found.add_argument("--model")
    found.add_argument("--network")
    known = found.parse_known_args(argv)[0]
    return known.model, known.network


def _model_setting_groups() -> dict[tuple[str, ...], list[str]]:
    """The model settings' flags grouped by who takes them: (owners) -> names, in the order first declared."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, declared in model_flags().items():
        groups.setdefault(tuple(owner for owner, _ in declared), []).append(name)
    return groups


def model_setting_names() -> set[str]:
    """The names of the model settings that are flags of `vaelab train` now."""
    return {name for names in _model_setting_groups().values() for name in names}


def _device_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--device", default="auto", choices=DEVICES,
                         help="where to compute: auto (a CUDA GPU if there is one), cpu or cuda")


def _checkpoint_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--checkpoint", default="best", choices=CHECKPOINTS,
                         help="the run's best checkpoint (by validation ELBO) or its latest")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    largest = MAX_WIDTH
    if not values or min(values) < 1 or max(values) > largest:
        raise argparse.ArgumentTypeError(f"{text!r}: every latent size must be from 1 to {largest:,}")
    return values
