"""What changes over the epochs: the learning rate (`--lr-schedule`) and the KL weight (`--warmup`).

Both are functions of the epoch alone (1-based), so a resumed run recomputes them exactly and
nothing about them needs to be stored.
"""

from __future__ import annotations

import math

LR_FLOOR = 0.01  # the cosine schedule ends at lr * LR_FLOOR


def learning_rate(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate for `epoch` of `epochs`: `lr` throughout (constant), or a half cosine from `lr` at
    epoch 1 to lr * LR_FLOOR at the last epoch (cosine)."""
    if schedule == "constant" or epochs <= 1:
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    progress = min(epoch - 1, epochs - 1) / (epochs - 1)
    return lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


def kl_weight(warmup: int, epoch: int) -> float:
    """The weight of log p(z) - log q(z | x) in `epoch`: epoch / warmup up to 1 (Sønderby et al. 2016,
    as Tomczak & Welling's code runs it); 1 throughout without warm-up."""
    return 1.0 if warmup <= 0 else min(1.0, epoch / warmup)
