"""How an evaluation walks the test images: batches shared among processes, one generator per
batch, and per-image figures summed by name into means."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..runtime.processes import SINGLE, Processes


def shared_batches(images: int, batch_size: int, processes: Processes = SINGLE) -> list[tuple[int, slice]]:
    """This process's batches of `images` images taken `batch_size` at a time: [(batch number b,
    the slice of its images)], those `processes.rows` gives it, in order. A process without a batch
    of its own gets one empty batch, (0, slice(0, 0)): it still adds its (empty) figures, so that
    every process takes part in every sum (`NamedSums.means`)."""
    count = math.ceil(images / batch_size)
    mine = range(count)[processes.rows(count)]
    return [(b, slice(b * batch_size, min(images, (b + 1) * batch_size))) for b in mine] or [(0, slice(0, 0))]


def images_in(batches: list[tuple[int, slice]]) -> int:
    """How many images `shared_batches`'s batches hold."""
    return sum(rows.stop - rows.start for _, rows in batches)


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

