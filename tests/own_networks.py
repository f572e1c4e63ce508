"""A user's own encoder and decoder for 3-channel 32 x 32 images, and data of that kind in arrays, written
as a user would: plain torch modules, nothing of vaelab's in them (tests/test_your_own_model.py).

`python -m tests.own_networks OUT [--signal-at STEP] [--resume]` trains them with `vaelab.train` in a
process of its own, sending itself SIGTERM before its STEP-th optimizer step (as a scheduler would).
"""

from __future__ import annotations

import argparse
import signal
import sys

import numpy as np
import torch
from torch import nn

LATENT = 8
CLASSES = ("red square", "green disc", "blue bar")


def colour_shapes(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [count, 3, 32, 32], labels [count]): a red square, a green disc or a blue bar,
    each of a random size and place on black."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), count)
    images = np.zeros((count, 3, 32, 32), dtype=np.uint8)
    rows, columns = np.mgrid[:32, :32]
    for image, label in zip(images, labels):
        size, top, left = rng.integers(6, 14), rng.integers(2, 16), rng.integers(2, 16)
        if label == 0:
            mask = (rows >= top) & (rows < top + size) & (columns >= left) & (columns < left + size)
        elif label == 1:
            mask = (rows - top - size / 2) ** 2 + (columns - left - size / 2) ** 2 < (size / 2) ** 2
        else:
            mask = (rows >= top) & (rows < top + 4) & (columns >= left) & (columns < left + 2 * size)
        image[label][mask] = 255
    return images, labels


class ConvEncoder(nn.Module):
    """Images [n, 3, 32, 32] -> [n, 2 d]: the mean and log-variance of q(z | x)."""

    def __init__(self, latent: int = LATENT, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 4, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 4, 2, 1),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(2 * width * 8 * 8, 2 * latent))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ConvDecoder(nn.Module):
    """Codes [n, d] -> [n, 3, 32, 32]: the logits of the pixels' Bernoulli."""

    def __init__(self, latent: int = LATENT, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(latent, 2 * width * 8 * 8), nn.ReLU(), nn.Unflatten(1, (2 * width, 8, 8)),
                                  nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
                                  nn.ConvTranspose2d(width, 3, 4, 2, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


SETTINGS = dict(model="vae", latent_dim=LATENT, epochs=3, batch_size=60, sample_epochs=(1,), seed=0)
IMAGES = 1000  # 800 to train on (14 steps an epoch, the last of 20), 100 for validation, 100 for test


def train(out: str, resume: bool = False):
    import vaelab

    torch.manual_seed(0)  # the modules' initialisation is the user's
    return vaelab.train(out, colour_shapes(IMAGES), encoder=ConvEncoder(), decoder=ConvDecoder(), resume=resume,
                        progress=False, log=lambda line: print(line, file=sys.stderr), **SETTINGS)


if __name__ == "__main__":
    from vaelab.errors import TrainingInterrupted

    from .signal_at_step import arm

    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--signal-at", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if args.signal_at:
        arm(args.signal_at, signal.SIGTERM)
    try:
        train(args.out, args.resume)
    except TrainingInterrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
