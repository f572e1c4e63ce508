"""A setting: what a family, a network or a training run takes by name, with its type, default, limits and help.

A family declares its settings beside itself (`Family.settings`, a dict of name -> `Setting`), a
network beside its constructors (`networks.Network.settings`), training the rest
(`vaelab.config.TrainConfig`). From these declarations alone come `vaelab train`'s flags (grouped
in `--help` by who takes them), the TOML keys, the keywords of `vaelab.train` and what is checked:
`check_value` converts a value to the setting's type or says in one line what is allowed. Sizes
and counts have upper limits, so a typo cannot ask for terabytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import VaelabError

KINDS = (int, float, str, bool, tuple)
MAX_WIDTH = 10_000  # latent size and hidden widths: a 10,000 x 10,000 layer is 400 MB, 1.6 GB with Adam's moments


@dataclass(frozen=True)
class Setting:
    """One setting: its type, default, limits and help.

    kind: int, float, str, bool or tuple (of whole numbers, written "500,500" on the command line).
    choices: the allowed strings, or `registry`: a dict whose keys are the allowed strings as they
    are now (the registered networks). minimum, maximum: limits of a number (a float must be above
    its minimum, a whole number at least it). optional: None is allowed (and means "not set", the
    owner's own default). group: where `vaelab train --help` lists a training setting;
    changes_on_resume: it may differ from the stored value on --resume (model settings never do).
    describe: what is allowed, in words, where the kind alone does not say. unlisted: choices
    allowed but not offered in messages and help.
    """

    kind: type
    default: object
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    group: str = "model"
    registry: Mapping | None = None
    changes_on_resume: bool = False
    example: str = ""
    describe: str = ""
    unlisted: tuple[str, ...] = ()  # choices allowed but not offered (network "given": vaelab.train's modules)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise TypeError(f"a setting's kind is one of int, float, str, bool or tuple, not {self.kind!r}")
        if self.kind in (int, float, tuple) and self.minimum is None:
            raise TypeError("a number's setting needs a minimum (and a maximum, for sizes and counts)")
        if self.kind is float and self.maximum is None:
            raise TypeError("a float setting needs a maximum")

    def options(self) -> tuple[str, ...] | None:
        """The allowed values of a setting with choices, as they are now (None: any value of its kind)."""
        return tuple(self.registry) if self.registry is not None else self.choices

    def allowed(self) -> str:
        """What is allowed, in words, for error messages."""
        if self.describe:
            return self.describe
        if self.options() is not None:
            return "one of " + ", ".join(option for option in self.options() if option not in self.unlisted)
        if self.kind is bool:
            return "true or false"
        if self.kind is float:
            return f"a finite number > {self.minimum:g} and <= {self.maximum:g}"
        if self.kind is str:
            return "a text"
        span = f">= {self.minimum}" if self.maximum is None else f"from {self.minimum} to {self.maximum:,}"
        if self.kind is tuple:
            return f"comma-separated whole numbers {span}, e.g. {self.example or '2,3'}"
        return f"a whole number {span}"

    def same_kind(self, other: "Setting") -> bool:
        """Whether two owners' declarations of one name can share a flag: the same kind (each owner
        checks a value against its own choices and limits)."""
        return self.kind is other.kind


def _fail(name: str, value, allowed: str) -> VaelabError:
    return VaelabError(f"{{{name}}} {value!r} is not allowed: use {allowed}")


def _whole(value, setting: Setting, limits: bool = True) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int) and value >= setting.minimum
            and (not limits or setting.maximum is None or value <= setting.maximum))


def check_value(name: str, declared: Setting, value, limits: bool = True):
    """`value` converted to the setting's type, or VaelabError (one line) saying what is allowed.

    A tuple may be given as a string of comma-separated whole numbers ("500,500", as a flag gives it).
    limits=False skips the upper limits on sizes and counts (for a stored config, whose checkpoint
    says what fits).
    """
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
    return value


def stored(value):
    """A setting's value as config.json stores it: a tuple as a list."""
    return list(value) if isinstance(value, tuple) else value
