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
    seen [n, C, H, W]: what the networks that read an image are given instead of x (`models.read`):
    the gray levels, for a run with `--encoder-input grayscale` (x itself where x is gray: the
    training split that each step binarises afresh); None: x.
    """

    x: torch.Tensor
    y: torch.Tensor
    binary: bool
    labelled: torch.Tensor | None = None
    seen: torch.Tensor | None = None

    @classmethod
    def from_split(cls, split, device: torch.device, gray_input: bool = False) -> "DeviceSplit":
        """The split on `device`; gray_input: `seen` holds its gray levels (`Split.gray_images`)."""
        x = torch.from_numpy(split.float_images()).to(device)
        seen = None
        if gray_input:
            seen = torch.from_numpy(split.gray_images()).to(device) if split.binary else x
        return cls(x=x, y=torch.from_numpy(split.labels).to(device), binary=split.binary, seen=seen)

    @property
    def read(self) -> torch.Tensor:
        """What the networks that read an image are given: `seen`, else x [n, C, H, W]."""
        return self.x if self.seen is None else self.seen

    def seen_rows(self, rows) -> torch.Tensor | None:
        """`seen` of these images (a slice or an int64 index), or None where q reads x."""
        if self.seen is None:
            return None
        return self.seen[rows] if isinstance(rows, slice) else self.seen.index_select(0, rows)
