"""What training and evaluation both stand on: the device, a split as device tensors, the
generator of one evaluation chunk, and sums of named figures over batches and processes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .distributed import SINGLE, Processes
from .errors import VaelabError


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


def chunk_generator(seed: int, chunk: int, device: torch.device | str) -> torch.Generator:
    """The generator of one chunk of an evaluation (chunk = its index): its own stream, spawned from seed.

    Chunks drawing from generators of their own give the same numbers whichever process, and in
    whichever order, computes them: what lets an evaluation split across processes.
    """
    state = np.random.SeedSequence([seed, chunk]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


class NamedSums:
    """Per-image figures summed over batches by name, in float64 (a float32 sum over 10,000 images
    drifts), then reduced over a group of processes and divided into means.

    Every process must add the same names (a process without a batch of its own adds an empty
    one), in the same order."""

    def __init__(self):
        self.totals: dict[str, torch.Tensor] = {}

    def add(self, figures: dict[str, torch.Tensor]) -> None:
        """Add each figure's sum over its images: {name: [images]} (or a count [])."""
        for name, value in figures.items():
            total = value.sum().double()
            self.totals[name] = total if name not in self.totals else self.totals[name] + total

    def means(self, images: int, processes: Processes = SINGLE) -> dict[str, float]:
        """{name: the sum over every process's batches / images}."""
        if not self.totals:
            return {}
        reduced = processes.sum(torch.stack(list(self.totals.values()))) / images
        return dict(zip(self.totals, reduced.tolist()))
