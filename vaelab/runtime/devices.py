"""The device a command computes on, and a split of images as tensors on it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import VaelabError


def resolve_device(name: str) -> torch.device:
    """"auto" (a CUDA GPU if there is one, else the CPU), "cpu" or "cuda" as a torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("{device} cuda was asked for but no CUDA GPU is available; use {device} cpu or auto")
    return torch.device(name)


@dataclass
class DeviceSplit:
    """A split as device tensors: x [n, C, H, W] float32 in [0, 1], y [n] int64.

    labelled [n] bool, for semi-supervised training: which images' labels the model may see (the
    others' y is kept only to measure accuracy); None: every label is seen.
    """

    x: torch.Tensor
    y: torch.Tensor
    binary: bool
    labelled: torch.Tensor | None = None

    @classmethod
    def from_split(cls, split, device: torch.device) -> "DeviceSplit":
        x = torch.from_numpy(split.float_images()).to(device)
        return cls(x=x, y=torch.from_numpy(split.labels).to(device), binary=split.binary)
