"""Checkpoints: safetensors (tensors) plus JSON metadata, written atomically; nothing is ever unpickled.

A checkpoint holds the model's tensors ("model.*"), optionally Adam's moments ("optimizer.*", with
its settings in the metadata), the random streams ("rng.*") and a partial epoch ("partial.*"), and
a JSON `info` dict (epoch, best validation ELBO, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from ..errors import RunError
from ..runtime.files import atomic_write_bytes
from .migration import current_tensors

IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")  # optimizer settings that are not the math


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, model: torch.nn.Module, info: dict, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write model (and optimizer and `extra`) tensors with JSON `info` as one safetensors file, atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"info": info}
    if optimizer is not None:
        optimizer_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(optimizer_tensors)
    for name, value in (extra or {}).items():
        tensors[name] = value.detach().cpu().contiguous()
    atomic_write_bytes(path, safetensors_save(tensors, metadata={"vaelab": json.dumps(meta)}))


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    info: dict
    optimizer_meta: dict | None
    path: Path

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model."):]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def disagreement(self, expected: dict[str, torch.Size]) -> str | None:
        """How the stored model tensors differ from `expected` (name -> shape), or None if they fit."""
        stored = self.model_state()
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        if missing or extra:
            return f"missing {missing[:3]}, unexpected {extra[:3]}"
        for name, value in sorted(stored.items()):
            if tuple(value.shape) != tuple(expected[name]):
                return f"{name} has shape {tuple(value.shape)}, the model needs {tuple(expected[name])}"
        return None

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Load the stored state into live objects; RunError if shapes or names do not fit."""
        problem = self.disagreement({k: v.shape for k, v in model.state_dict().items()})
        if problem:
            raise RunError(f"{self.path} does not fit this model: {problem}")
        model.load_state_dict(self.model_state())
        if optimizer is not None:
            if self.optimizer_meta is None:
                raise RunError(f"{self.path} holds no optimizer state, so training cannot resume from it")
            state = _optimizer_state(self.tensors, self.optimizer_meta)
            # the update rule's settings come from the checkpoint, how it runs (fused, foreach...) from
            # this process: a run saved with another implementation, or on another device, resumes fast
            for saved, live in zip(state["param_groups"], optimizer.param_groups):
                saved.update({key: live[key] for key in IMPLEMENTATION_KEYS if key in live})
            optimizer.load_state_dict(state)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (safetensors only, never pickle)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise RunError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise RunError(f"checkpoint {path} is unreadable ({exc}); use another checkpoint or train again") from None
    return parse_checkpoint(data, path)


def parse_checkpoint(data: bytes, path: Path) -> Checkpoint:
    """A checkpoint from the bytes of its file (`path` names it in messages): what `load_checkpoint` reads."""
    try:
        tensors = safetensors_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("vaelab", "{}"))
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise RunError(f"checkpoint {path} is unreadable ({exc}); use another checkpoint or train again") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("info"), dict):
        raise RunError(f"checkpoint {path} was not written by vaelab (no metadata)")
    return Checkpoint(tensors=current_tensors(tensors), info=meta["info"], optimizer_meta=meta.get("optimizer"),
                      path=Path(path))
