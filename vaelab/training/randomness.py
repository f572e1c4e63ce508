"""The run's random numbers: one named torch.Generator per use, each stored in the checkpoint.

    order   the permutation of the training images, drawn at the start of every epoch
    pixels  the dynamic binarisation: fresh Bernoulli pixels every time an image is used
    noise   the Gaussian noise eps of the reparameterisation z = mu + sigma * eps

Apart, drawing more or fewer numbers of one use (a static binarisation draws no pixels; more
samples per image draw more noise) leaves the numbers of the others as they were. In a group of
processes (`vaelab.runtime.processes`) every process holds the same three streams and draws the whole
step's order, pixels and noise, then computes on its own rows of them, so that N processes give
the one-process run. The parameter initialisation is the only draw from torch's global generator,
seeded with the run's seed inside `torch.random.fork_rng` (`trainer.new_training`), so the
caller's global generator is left where it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STREAMS = ("order", "pixels", "noise")
LEGACY_KEY = "rng.train"  # vaelab 0.1 drew all three from one generator, stored under this name


@dataclass
class RandomStreams:
    order: torch.Generator
    pixels: torch.Generator
    noise: torch.Generator

    @classmethod
    def seeded(cls, seed: int, device: torch.device | str) -> "RandomStreams":
        """Three independent streams from one seed (numpy's SeedSequence spawns their seeds)."""
        children = np.random.SeedSequence(seed).spawn(len(STREAMS))
        seeds = [int(child.generate_state(1, np.uint64)[0]) for child in children]
        return cls(*(torch.Generator(device=device).manual_seed(s) for s in seeds))

    @classmethod
    def shared(cls, generator: torch.Generator) -> "RandomStreams":
        """All three uses drawing from one generator, in the order vaelab 0.1 drew them (runs it wrote resume exactly)."""
        return cls(generator, generator, generator)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The streams' states for the checkpoint: {"rng.order": uint8 tensor, ...}."""
        if self.order is self.pixels is self.noise:
            return {LEGACY_KEY: self.order.get_state()}
        return {f"rng.{name}": getattr(self, name).get_state() for name in STREAMS}

    @classmethod
    def from_state_tensors(cls, tensors: dict[str, torch.Tensor], device: torch.device | str) -> "RandomStreams":
        """The streams a checkpoint stored (KeyError if it stored none)."""
        if LEGACY_KEY in tensors:
            generator = torch.Generator(device=device)
            generator.set_state(tensors[LEGACY_KEY])
            return cls.shared(generator)
        streams = []
        for name in STREAMS:
            generator = torch.Generator(device=device)
            generator.set_state(tensors[f"rng.{name}"])
            streams.append(generator)
        return cls(*streams)
