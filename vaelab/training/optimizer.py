"""The optimizer a run trains with."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def make_adam(parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where the device has one (CPU and CUDA do), else the foreach one.

    The fused kernel updates all parameters in one pass over memory; on a 2-core CPU it takes
    0.5 ms per step for the CVAE's 1.4 million parameters against 3-6 ms for the default
    per-tensor and foreach implementations (benchmarks/train_throughput.py). Same update rule.
    """
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except RuntimeError:  # a device without a fused Adam kernel
        return torch.optim.Adam(parameters, lr=lr, foreach=True)

