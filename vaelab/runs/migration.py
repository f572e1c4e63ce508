"""Run directories written by earlier versions, brought up to today's form as they are read: the one
place that knows the old forms of config.json and of a checkpoint's names. Nothing is written back:
a migrated run is saved in today's form at its next checkpoint.

What changed, and how it is read now:
- config.json of a semi-supervised run without `labelled_batch` (made before the labelled batch
  existed): labelled_batch 0, the plan it trained with (each labelled image once per epoch).
- config.json without `encoder_input` (made before q could read the gray levels): encoder_input
  target, what its q read, whatever a family's default is now (M2's is grayscale).
- config.json made before families and networks declared their own settings, which held every
  model setting of every family: the settings the run's family and network do not take are
  dropped where they hold a default (or a network's setting, which other networks ignored then),
  and a network setting stored as null (conv's and resnet's depth: "the network's default")
  takes that default. A value a family would have refused stays, and is refused as an edit.
- a checkpoint stopped mid-epoch that holds the epoch's bound alone, as `partial.bound_sum`
  (made before the bound's parts were summed): `partial.sum.bound`, and the epoch goes on summing
  the bound alone (`training.epoch.train_epoch`).
Old forms that are a way of computing, not of storing, stay where they compute: one random
generator for all three streams (`training.randomness.RandomStreams.shared`, stored as
`rng.train`), the Gaussian likelihood's flat scale (`models.families`), the data cache's v1 file
(`data.cache`).
"""

from __future__ import annotations

import torch

from ..config import SETTINGS
from ..models import FAMILIES, NETWORKS, model_settings_owners, network_of, settings_of
from ..models.settings import stored

PARTIAL_SUMS = "partial.sum."  # a checkpoint stopped mid-epoch: the epoch's sums so far, one tensor per name


def current_config(values: dict) -> dict:
    """config.json's values (a JSON object) in today's form: a new dict."""
    values = dict(values)
    values.setdefault("encoder_input", "target")
    if values.get("labels") is not None:
        values.setdefault("labelled_batch", 0)
    model, network = values.get("model", SETTINGS["model"].default), network_of(values)
    if not isinstance(model, str) or model not in FAMILIES or network is not None and network not in NETWORKS:
        return values  # refused as it is, with what is wrong (`config.config_from_dict`)
    taken = settings_of(model, network)
    owners = model_settings_owners()
    for name in [name for name in values if name in owners and name not in SETTINGS]:
        declared = [setting for _, setting in owners[name]]
        if name in taken:
            if values[name] is None and not taken[name].optional:
                del values[name]
        elif all(owner.startswith("--network") for owner, _ in owners[name]) or \
                any(stored(setting.default) == values[name] for setting in declared):
            del values[name]
    return values


def current_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under today's names: a new dict, the same tensors."""
    renamed = {"partial.bound_sum": PARTIAL_SUMS + "bound"}
    return {renamed.get(name, name): value for name, value in tensors.items()}
