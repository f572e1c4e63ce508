"""Another program computing beside a test: a plain PyTorch training loop on one thread (an MLP
autoencoder on random images, Adam), as a user's other work would be.

`python -m tests.busy` runs it until killed (to run the whole suite beside it); `beside_a_training_loop()`
starts it for the length of a `with` block, once it has taken its first steps, so that a test checks
its promise on a busy machine on every run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .progress import ROOT

STEPS_BEFORE_READY = 3


def loop(ready=lambda: None) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 500),
                                  torch.nn.ReLU(), torch.nn.Linear(500, 784))
    optimizer = torch.optim.Adam(network.parameters(), 1e-3)
    images = torch.rand(128, 784)
    step = 0
    while True:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(network(images), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step == STEPS_BEFORE_READY:
            ready()


@contextmanager
def beside_a_training_loop() -> Iterator[subprocess.Popen]:
    """The training loop in a process of its own, computing, for the length of the block."""
    process = subprocess.Popen([sys.executable, "-m", "tests.busy"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout.readline() == "computing\n", "the training loop beside the test did not start"
        yield process
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    loop(ready=lambda: print("computing", flush=True))
