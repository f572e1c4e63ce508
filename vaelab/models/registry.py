"""The families and networks a process knows, and the settings they take: `--model` and `--network`.

    FAMILIES                 name -> family class (VAE, CVAE, M2, ADGM, SDGM and what `register_family` adds)
    settings_of              the settings one run's family and network take, name -> `Setting`
    family_settings          their names
    model_settings_owners    every setting any registered family or network declares, with who declares it
    build_model              a new model of a family from its settings

A family's settings are `Setting`s beside it (`Family.settings`); a family that takes a `network`
takes that network's settings too (`networks.NETWORKS`). What registers a family or a network is
remembered (`registered_by`): a run made with it names that module, which must be imported again
to load it (in Python, import it first; on the command line, `--import MODULE`). Nothing here
imports a module a run names: a run directory from someone else never runs code.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from ..errors import NotRegistered, VaelabError
from .auxiliary import ADGM
from .skip import SDGM
from .families import CVAE, VAE
from .semi_supervised import M2
from .interface import FAMILY_MEMBERS, DataFacts, Model
from .networks import GIVEN, NETWORKS, given_network
from .settings import Setting, check_value

# name (--model) -> family; register_family adds to it
FAMILIES: dict[str, type] = {"vae": VAE, "cvae": CVAE, "m2": M2, "adgm": ADGM, "sdgm": SDGM}
# name -> the module that registered it, for the families registered from outside vaelab
REGISTERED_BY: dict[str, str] = {}


def _declared_anywhere() -> dict[str, Setting]:
    """Every setting a family or network declares in a dict, by name (the first declaration)."""
    found: dict[str, Setting] = {}
    for owner in (*FAMILIES.values(), *NETWORKS.values()):
        if isinstance(owner.settings, Mapping):
            for name, declared in owner.settings.items():
                found.setdefault(name, declared)
    return found


def declared_settings(family: type) -> dict[str, Setting]:
    """A family class's own settings, name -> Setting. A family may name, as a tuple, settings that
    vaelab's families declare (the form of families written before settings had declarations)."""
    if isinstance(family.settings, Mapping):
        return dict(family.settings)
    known = _declared_anywhere()
    missing = [name for name in family.settings if name not in known]
    if missing:
        raise TypeError(f"{family.__name__}.settings names {', '.join(missing)}, which no family or network "
                        "declares: give settings as a dict of name -> vaelab.models.Setting")
    return {name: known[name] for name in family.settings}


def register_family(name: str, family: type) -> None:
    """Make `family` the choice `--model name` (and `model=name` in `vaelab.train`): a class with the
    members of `Model` (`Family` gives the defaults of what a family declares) and a
    `for_data(data: DataFacts, **settings)` constructor. Its settings (`Family.settings`, name ->
    `Setting`) become flags of `vaelab train`, TOML keys and keywords of `vaelab.train`; its rules
    between them are its `check_settings`. A class that lacks a member raises TypeError naming
    them, and so does a setting that another family or network declares with another kind.
    """
    missing = [member for member in ("for_data", *FAMILY_MEMBERS) if not hasattr(family, member)]
    if missing:
        raise TypeError(f"family {name!r} ({family.__name__}) lacks {', '.join(sorted(missing))}: build it on "
                        "vaelab.models.Family, which gives the defaults")
    if not isinstance(name, str) or not name or name in FAMILIES and name not in REGISTERED_BY:
        raise ValueError(f"model name {name!r} is taken by vaelab or empty; choose another")
    declared = declared_settings(family)
    for setting_name, setting in declared.items():
        if not isinstance(setting, Setting):
            raise TypeError(f"family {name!r}: setting {setting_name!r} must be a vaelab.models.Setting")
        for owner, other in model_settings_owners().get(setting_name, ()):
            if not setting.same_kind(other) and owner != f"--model {name}":
                raise TypeError(f"family {name!r}: setting {setting_name!r} is declared by {owner} with another "
                                "kind, choices or limits; give it another name")
    FAMILIES[name] = family
    REGISTERED_BY[name] = sys._getframe(1).f_globals.get("__name__", "__main__")


def check_registered(model: str, network: str | None = None, imports: tuple[str, ...] = ()) -> None:
    """NotRegistered (one line) unless `model` (and `network`, if given) are registered in this
    process, naming the modules that registered them when the run was made (`imports`)."""
    missing = [f"{{model}} {model}"] if model not in FAMILIES else []
    if network is not None and network not in NETWORKS:
        missing.append(f"{{network}} {network}")
    if not missing:
        return
    modules = [module for module in imports if module != "__main__"]
    how = (f"import {', '.join(modules)} first (on the command line: "
           + " ".join(f"--import {module}" for module in modules) + ")") if modules else \
        ("register it again, as the script or notebook that made the run did, before loading" if imports else
         f"choose one of {', '.join(FAMILIES)}, or import the module that registers it (--import MODULE)")
    raise NotRegistered(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not registered in this "
                      f"process: {how}")


def settings_of(model: str, network: str | None = None) -> dict[str, Setting]:
    """The settings a run of family `model` takes, name -> Setting: the family's own, and, for a
    family that takes a `network`, the settings of `network` (default: the family's default network)."""
    check_registered(model)
    settings = declared_settings(FAMILIES[model])
    if "network" in settings:
        chosen = network if network is not None else settings["network"].default
        check_registered(model, chosen)
        settings.update(NETWORKS[chosen].settings)
    return settings


def family_settings(model: str, network: str | None = None) -> tuple[str, ...]:
    """The names of the settings a run of family `model` (with `network`) takes (`settings_of`)."""
    return tuple(settings_of(model, network))


def model_settings_owners() -> dict[str, list[tuple[str, Setting]]]:
    """Every setting a registered family or network declares: name -> [(owner, Setting)], the
    owner in words ("--model vae", "--network conv"), families first, in registration order."""
    owners: dict[str, list[tuple[str, Setting]]] = {}
    for kind, registry in (("--model", FAMILIES), ("--network", NETWORKS)):
        for name, owner in registry.items():
            declared = declared_settings(owner) if kind == "--model" else dict(owner.settings)
            for setting_name, setting in declared.items():
                owners.setdefault(setting_name, []).append((f"{kind} {name}", setting))
    return owners


def network_of(settings: Mapping) -> str | None:
    """The network a run's model settings (name -> value) name, if its family takes one."""
    network = settings.get("network")
    return network if isinstance(network, str) else None


def check_model_settings(model: str, values: Mapping, limits: bool = True) -> dict:
    """The settings of family `model` and its network from `values` (name -> value; None: not
    given), each checked against its declaration (`settings.check_value`) and completed with the
    defaults: name -> value of every setting they take, in their order. A setting another family
    or network takes, or none does, is a VaelabError of one line naming what this one takes.
    limits=False skips the upper limits on sizes (a stored run's checkpoint says what fits)."""
    check_registered(model)
    own = declared_settings(FAMILIES[model])
    values = dict(values)
    if values.get("network") is not None and "network" in own:
        values["network"] = check_value("network", own["network"], values["network"], limits)
    taken = settings_of(model, network_of(values))
    checked = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in taken:
            owners = [owner for owner, _ in model_settings_owners().get(name, ())]
            if not owners:
                raise VaelabError(f"unknown setting {name!r}; known: {', '.join(model_settings_owners())}")
            if "network" in own and any(owner.startswith("--network") for owner in owners):
                network = network_of(values) or own["network"].default
                network_own = [n for n in taken if n not in own]
                raise VaelabError(f"{{network}} {network} does not take {{{name}}}: drop it (its settings: "
                                  + (", ".join("{" + n + "}" for n in network_own) or "none") + ")")
            raise VaelabError(f"{{model}} {model} does not take {{{name}}}: drop it (its settings: "
                              + ", ".join("{" + n + "}" for n in taken) + ")")
        checked[name] = check_value(name, taken[name], value, limits)
    return {name: checked.get(name, declared.default) for name, declared in taken.items()}


def check_stored_registered(model, settings: Mapping, imports: tuple[str, ...]) -> None:
    """`check_registered` for a stored run's family and network (config.json's values)."""
    if isinstance(model, str):
        check_registered(model, network_of(settings), imports)


def imports_of(model: str, settings: Mapping) -> tuple[str, ...]:
    """The modules outside vaelab that registered `model` and the network its `settings` name:
    what a run made with them needs imported to load."""
    network = network_of(settings)
    modules = [REGISTERED_BY.get(model)]
    if network is not None and network in NETWORKS:
        modules.append(None if NETWORKS[network].registered_by == "vaelab" else NETWORKS[network].registered_by)
    return tuple(dict.fromkeys(module for module in modules if module))


def build_model(family: str, image_shape: tuple[int, int, int], num_classes: int, train_images: int | None = None,
                labelled_images: int | None = None, labelled_batch: int = 0, modules: Mapping | None = None,
                **settings) -> Model:
    """A new model of `family` (--model) for images of `image_shape` (C, H, W) in `num_classes` classes.

    train_images, labelled_images, labelled_batch: how many images it is built to train on, how many
    of them keep their label, and how many labelled images are in every step (None, None, 0: it is
    built to be loaded; see `DataFacts`). settings: values of the settings the family (and its
    network) take (`family_settings`), and only those; what is not given, or None, takes the
    family's own default; a setting of another network than the one chosen is ignored, as that
    network's. modules: the encoder and decoder (and classifier) modules of network "given"
    (handed to `vaelab.train`; `networks.given_settings`): the model's parts, as they are.
    """
    wanted = settings_of(family, settings.get("network"))
    other_networks = {name for kind in NETWORKS.values() for name in kind.settings} if "network" in wanted else set()
    settings = {name: value for name, value in settings.items() if name in wanted or name not in other_networks}
    unknown = sorted(name for name in settings if name not in wanted)
    if unknown:
        raise ValueError(f"model {family!r} does not take {', '.join(unknown)}; it takes {', '.join(wanted)}")
    chosen = {name: value for name, value in settings.items() if value is not None}
    modules = {role: module for role, module in (modules or {}).items() if module is not None}
    if chosen.get("network") == GIVEN:
        if not {"encoder", "decoder"} <= set(modules):
            classes = ", ".join(f"{role} {chosen[role]}" for role in ("encoder", "decoder", "classifier")
                                if chosen.get(role))
            if not classes:  # asked for by name, not made with modules
                raise VaelabError("{network} given is the modules handed to vaelab.train(encoder=..., decoder=...), "
                                  "and only there; to name a network of your own, register it "
                                  "(vaelab.register_network) and use its name")
            raise VaelabError(f"this run was trained with modules handed to vaelab.train ({classes}), and vaelab never "
                              "pickles them: in Python, build them as they were and pass them, vaelab.load_run(DIR, "
                              "encoder=..., decoder=...); for the command line, register the network "
                              "(vaelab.register_network) and train with --network NAME")
        chosen["network"] = given_network(**modules)
    elif modules:
        raise VaelabError(f"{{network}} {chosen.get('network')}: this model's networks are built from its settings; "
                          "pass encoder and decoder modules only with network given (vaelab.train's modules)")
    data = DataFacts(tuple(image_shape), num_classes, train_images, labelled_images, labelled_batch)
    return FAMILIES[family].for_data(data, **chosen)
