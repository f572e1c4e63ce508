"""A run directory: the one place its layout and its file formats are defined.

    DIR/config.json            the TrainConfig of the run
    DIR/metrics.jsonl          one JSON object per finished epoch
    DIR/checkpoint.safetensors latest state: model, optimizer, RNG, epoch (for --resume)
    DIR/best.safetensors       model with the best validation ELBO so far
    DIR/samples/epoch_NNN.png  per-class (or random) sample grids from one fixed set of z
    DIR/eval.json              the output of `vaelab evaluate`

Checkpoints are safetensors (tensors) plus JSON metadata; nothing in a run directory is ever
unpickled. Every file is written atomically: temporary file, flush, fsync, rename, fsync folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from .errors import RunError
from .files import atomic_write_bytes


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
    def eval(self) -> Path:
        return self.path / "eval.json"

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


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


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


def save_checkpoint(path: Path, model: torch.nn.Module, info: dict,
                    optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write model (and optimizer, RNG and `extra`) tensors with JSON `info` as one safetensors file, atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"info": info}
    if optimizer is not None:
        optimizer_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(optimizer_tensors)
    if generator is not None:
        tensors["rng.train"] = generator.get_state()
    for name, value in (extra or {}).items():
        tensors[name] = value.detach().cpu().contiguous()
    atomic_write_bytes(path, safetensors_save(tensors, metadata={"vaelab": json.dumps(meta)}))


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    info: dict
    optimizer_meta: dict | None

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model."):]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                generator: torch.Generator | None = None, path: Path | None = None) -> None:
        """Load the stored state into live objects; RunError if shapes or names do not fit."""
        where = path or "checkpoint"
        expected = model.state_dict()
        stored = self.model_state()
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        if missing or extra:
            raise RunError(f"{where} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
        for name, value in stored.items():
            if tuple(value.shape) != tuple(expected[name].shape):
                raise RunError(f"{where} does not fit this model: {name} has shape {tuple(value.shape)},"
                               f" the model needs {tuple(expected[name].shape)}")
        model.load_state_dict(stored)
        if optimizer is not None:
            if self.optimizer_meta is None:
                raise RunError(f"{where} holds no optimizer state, so training cannot resume from it")
            state = _optimizer_state(self.tensors, self.optimizer_meta)
            # the update rule's settings come from the checkpoint, how it runs (fused, foreach...) from
            # this process: a run saved with another implementation, or on another device, resumes fast
            for saved, live in zip(state["param_groups"], optimizer.param_groups):
                saved.update({key: live[key] for key in IMPLEMENTATION_KEYS if key in live})
            optimizer.load_state_dict(state)
        if generator is not None:
            if "rng.train" not in self.tensors:
                raise RunError(f"{where} holds no random-number state, so training cannot resume from it")
            generator.set_state(self.tensors["rng.train"])


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (safetensors only, never pickle)."""
    try:
        data = Path(path).read_bytes()
        tensors = safetensors_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("vaelab", "{}"))
    except FileNotFoundError:
        raise RunError(f"checkpoint {path} does not exist") from None
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise RunError(f"checkpoint {path} is unreadable ({exc}); use another checkpoint or train again") from None
    if "info" not in meta:
        raise RunError(f"checkpoint {path} was not written by vaelab (no metadata)")
    return Checkpoint(tensors=tensors, info=meta["info"], optimizer_meta=meta.get("optimizer"))
