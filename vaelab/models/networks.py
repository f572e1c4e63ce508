"""Networks: the parts a family is put together from, chosen by `--network`, and the live registry of them.

An encoder network maps images x [*batch, C, H, W] (and a label y, for a family that has one) to
[*batch, out_features], the parameters of q(z | x[, y]); a decoder network maps codes
z [*batch, d] (and y) to [*batch, C, H, W], the parameters of p(x | z[, y]) per pixel. vaelab's own
networks take any batch shape: a [samples, batch, d] draw of z goes through a decoder as it is,
with y [batch], and nothing is copied once per sample.

    layers.py   activations, Dense, ConditionalLinear, ClassBias (how a label enters)
    mlp.py      --network mlp
    conv.py     --network conv: strided convolutions down, transposed convolutions up
    resnet.py   --network resnet: residual blocks, in the spirit of Kingma et al. (2016)

A network is a `Network`: its two constructors and the settings they take (`Setting`s, which
become `vaelab train` flags). `register_network` adds one; a user's networks see one batch
dimension only (`UserNetwork` folds the others in and out), and modules handed over as they are
(`given_network`) are used once, as the model's parts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import VaelabError
from .conv import ConvDecoder, ConvEncoder
from .layers import ACTIVATIONS, ConditionalLinear, Dense, Network as ReducedPrecision, ReLU
from .mlp import MLPDecoder, MLPEncoder
from .resnet import ResNetDecoder, ResNetEncoder
from .settings import MAX_WIDTH, Setting

HIDDEN = Setting(tuple, (500, 500), "hidden widths, e.g. 500,500 (encoder; the decoder mirrors it)", minimum=1,
                 maximum=MAX_WIDTH, example="500,500")
ACTIVATION = Setting(str, "relu", "the activation: relu, tanh, softplus, elu or gelu", choices=tuple(ACTIVATIONS))
CHANNELS = Setting(int, 32, "feature maps (conv doubles them once)", minimum=1, maximum=1024)


def _depth(default: int) -> Setting:
    return Setting(int, default, "convolutions (conv) or residual blocks (resnet) per resolution", minimum=1,
                   maximum=64)


@dataclass(frozen=True)
class Network:
    """A kind of network (`--network`): how to build its encoder and its decoder, and what they take.

    encoder(image_shape, out_features, num_classes, **settings) -> module: images [n, C, H, W] (and,
    for num_classes > 0, labels y [n]) -> [n, out_features]. decoder(latent_dim, image_shape,
    num_classes, **settings) -> module: codes [n, latent_dim] (and y [n]) -> [n, C, H, W], the
    parameters of p(x | z[, y]) per pixel (logits of a Bernoulli, the mean of a Gaussian). A
    classifier is the encoder with num_classes outputs and no label (`build_classifier`).
    settings: what the constructors take by name beyond those, each a `Setting` (a flag of vaelab
    train). any_batch: the modules take [*batch, ...] themselves (vaelab's own); False: they see
    one batch dimension, and `UserNetwork` folds the others in and out. registered_by: the module
    that registered it (what a run made with it needs imported to load).
    """

    encoder: Callable[..., nn.Module]
    decoder: Callable[..., nn.Module]
    settings: Mapping[str, Setting] = field(default_factory=dict)
    any_batch: bool = False
    registered_by: str = "vaelab"


def _given_only(*_, **__) -> nn.Module:
    """The constructors of the network "given", which only `given_network` builds (`registry.build_model`)."""
    raise VaelabError("{network} given is the modules handed to vaelab.train(encoder=..., decoder=...), and only "
                      "there; to name a network of your own, register it (vaelab.register_network) and use its name")


# name -> Network: the choices of --network, as they are now (register_network adds to it)
NETWORKS: dict[str, Network] = {
    "mlp": Network(MLPEncoder, MLPDecoder, {"hidden": HIDDEN, "activation": ACTIVATION}, any_batch=True),
    "conv": Network(ConvEncoder, ConvDecoder, {"channels": CHANNELS, "depth": _depth(1),
                                               "activation": ACTIVATION}, any_batch=True),
    "resnet": Network(ResNetEncoder, ResNetDecoder, {"channels": CHANNELS, "depth": _depth(2),
                                                     "activation": ACTIVATION}, any_batch=True),
    "given": Network(_given_only, _given_only, {
        name: Setting(str, None, f"the class of the {name} module handed to vaelab.train", optional=True)
        for name in ("encoder", "decoder", "classifier")}, any_batch=True),
}
GIVEN = "given"  # the network of modules handed over as they are (`given_network`)


def register_network(name: str, encoder: Callable[..., nn.Module], decoder: Callable[..., nn.Module],
                     settings: Mapping[str, Setting] | None = None) -> None:
    """Make `name` a choice of `--network` (and of `network=` in `vaelab.train`): the modules are built
    by `encoder(image_shape, out_features, num_classes, **settings)` and `decoder(latent_dim,
    image_shape, num_classes, **settings)` (see `Network` for what they get and return), each taking
    the settings (name -> `Setting`) that its signature names. The settings become flags of
    `vaelab train`. A run made with it stores the name and the settings; loading it needs this
    registration again (import the module that makes it; `--import MODULE` on the command line).
    """
    if not isinstance(name, str) or not name or name in NETWORKS and NETWORKS[name].registered_by == "vaelab":
        raise ValueError(f"network name {name!r} is taken or empty; choose another")
    if not callable(encoder) or not callable(decoder):
        raise TypeError("register_network needs the encoder's and the decoder's constructors (classes or functions)")
    settings = dict(settings or {})
    for key, declared in settings.items():
        if not isinstance(declared, Setting):
            raise TypeError(f"network {name!r}: setting {key!r} must be a vaelab.models.Setting, not "
                            f"{type(declared).__name__}")
    caller = sys._getframe(1).f_globals.get("__name__", "__main__")  # the module a run needs imported to load
    NETWORKS[name] = Network(encoder, decoder, settings, any_batch=False, registered_by=caller)


class UserNetwork(ReducedPrecision):
    """A user's module as a vaelab network: it sees one batch dimension and gets what it is promised.

    Inputs [*batch, *event] and labels y are broadcast against each other and folded to
    [n, *event] and [n]; the module gets (inputs) or, for a family with a class label, (inputs, y); its
    output must be [n, *outputs] (a VaelabError says what it returned otherwise) and is unfolded
    to [*batch, *outputs]. Its products run in reduced precision where the training step asks
    (`layers.Network`).
    """

    def __init__(self, module: nn.Module, role: str, event_dims: int, outputs: tuple[int, ...], labels: bool):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise VaelabError(f"the {role} must be a torch.nn.Module, not {type(module).__name__}")
        self.module, self.role, self.event_dims, self.outputs, self.labels = module, role, event_dims, outputs, labels
        count = sum(parameter.numel() for parameter in module.parameters())
        self.description = f"{type(module).__name__} ({count:,} parameters)"

    def compute(self, inputs: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        event = inputs.shape[inputs.ndim - self.event_dims:]
        batch = inputs.shape[: inputs.ndim - self.event_dims]
        labels = self.labels and y is not None
        if labels:  # the inputs and the labels broadcast: M2 takes every image in every class, [classes, batch]
            batch = torch.broadcast_shapes(batch, y.shape)
        flat = inputs.expand(*batch, *event).reshape(-1, *event)
        output = self.module(flat, y.expand(batch).reshape(-1)) if labels else self.module(flat)
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != (flat.shape[0], *self.outputs):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise VaelabError(f"the {self.role} ({type(self.module).__name__}) returned {shape} for {flat.shape[0]} "
                              f"inputs; it must return [{flat.shape[0]}, {', '.join(map(str, self.outputs))}]")
        return output.reshape(*batch, *self.outputs)


def _settings_of(network: Network, settings: dict) -> dict:
    return {name: value for name, value in settings.items() if name in network.settings}


def _network(network: "str | Network") -> Network:
    if isinstance(network, Network):
        return network
    if network not in NETWORKS:
        raise VaelabError(f"{{network}} {network!r} is not registered in this process; choose one of "
                          f"{', '.join(NETWORKS)}, or import the module that registers it (--import MODULE)")
    return NETWORKS[network]


def build_networks(network: "str | Network", image_shape: tuple[int, int, int], latent_dim: int, encoder_outputs: int,
                   num_classes: int, **settings) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) of kind `network` (a name in NETWORKS, or a `Network`): the encoder gives
    `encoder_outputs` numbers per image, the decoder the pixels' parameters [*batch, C, H, W].

    settings: the network's settings (hidden, channels, ...); each constructor takes the ones the
    network declares. A user's modules are wrapped in `UserNetwork`.
    """
    kind = _network(network)
    given = _settings_of(kind, settings)
    encoder = kind.encoder(tuple(image_shape), encoder_outputs, num_classes, **given)
    decoder = kind.decoder(latent_dim, tuple(image_shape), num_classes, **given)
    if kind.any_batch:
        return encoder, decoder
    encoder = UserNetwork(encoder, "encoder", 3, (encoder_outputs,), num_classes > 0)
    decoder = UserNetwork(decoder, "decoder", 1, tuple(image_shape), num_classes > 0)
    _try(encoder, (2, *image_shape), num_classes)
    _try(decoder, (2, latent_dim), num_classes)
    return encoder, decoder


def _try(network: "UserNetwork", shape: tuple[int, ...], num_classes: int) -> None:
    """Run a user's module once on zeros of `shape` (and labels 0), so that a wrong output shape is
    one line when the model is built, before a run directory is written; not on the meta device."""
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.get_default_device()
    if device.type == "meta" or torch.get_default_device().type == "meta":
        return
    training = network.training
    network.eval()  # no dropout draw, and torch's random state as it was: the model's initialisation is not moved
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            network(torch.zeros(shape, device=device), torch.zeros(shape[0], dtype=torch.long, device=device)
                    if num_classes else None)
    finally:
        network.train(training)


def build_classifier(network: "str | Network", image_shape: tuple[int, int, int], num_classes: int,
                     **settings) -> nn.Module:
    """A classifier of kind `network`: images [*batch, C, H, W] -> logits [*batch, num_classes].

    It is the network's encoder with `num_classes` outputs and no label input, so every network
    that encodes also classifies (q(y | x) of the semi-supervised M2).
    """
    kind = _network(network)
    classifier = kind.encoder(tuple(image_shape), num_classes, 0, **_settings_of(kind, settings))
    if kind.any_batch:
        return classifier
    classifier = UserNetwork(classifier, "classifier", 3, (num_classes,), False)
    _try(classifier, (2, *image_shape), 0)
    return classifier


def given_network(encoder: nn.Module, decoder: nn.Module, classifier: nn.Module | None = None) -> Network:
    """A `Network` whose constructors hand over these modules, each once: a family built with it
    (network="given") has them as its parts, wrapped in `UserNetwork`. The encoder must return
    what the family asks of it (2 d numbers per image for a Gaussian z: its mean and log-variance,
    see the family), the decoder [n, C, H, W] pixel parameters, the classifier (a family with
    q(y | x)) [n, classes] logits."""
    modules = {"encoder": encoder, "decoder": decoder, "classifier": classifier}
    for role, module in modules.items():
        if module is not None and not isinstance(module, nn.Module):
            raise VaelabError(f"{{{role}}} must be a torch.nn.Module, not {type(module).__name__}")
    handed: set[str] = set()

    def hand_over(role: str) -> Callable[..., nn.Module]:
        def make(*_, **__) -> nn.Module:
            if modules[role] is None:
                raise VaelabError(f"this family needs a {role} module too: pass {role}=... beside encoder and decoder")
            if role in handed:
                raise VaelabError(f"this family asks for a second {role}; a module handed over is used once")
            handed.add(role)
            return modules[role]
        return make

    def encoder_or_classifier(image_shape, out_features, num_classes, **_):
        return hand_over("classifier" if num_classes == 0 and "encoder" in handed else "encoder")()

    return Network(encoder_or_classifier, hand_over("decoder"), NETWORKS[GIVEN].settings, any_batch=False,
                   registered_by="vaelab")


def given_settings(modules: dict, settings: dict) -> dict:
    """`settings` (name -> value) for a model built from `modules` (encoder, decoder, perhaps
    classifier; None: not given) handed over as they are: network "given" and the modules' classes
    (module.Class), which the run stores to name them when it is loaded without them. Without
    modules, `settings` as they are."""
    modules = {role: module for role, module in modules.items() if module is not None}
    if not modules:
        return dict(settings)
    if not {"encoder", "decoder"} <= set(modules):
        raise VaelabError("give both an encoder and a decoder module (and a classifier, for a family with q(y | x))")
    if settings.get("network") not in (None, GIVEN):
        raise VaelabError("pass your modules or a network's name, not both: drop network, or the modules")
    classes = {role: f"{type(module).__module__}.{type(module).__qualname__}" for role, module in modules.items()}
    return {**settings, "network": GIVEN, **classes}


__all__ = ["ACTIVATIONS", "NETWORKS", "ConditionalLinear", "Dense", "Network", "ReLU", "UserNetwork",
           "build_classifier", "build_networks", "given_network", "given_settings", "register_network"]
