"""What summing the bound's parts costs a training step: the compiled step of the default CVAE that
returns the bound with its parts (as vaelab trains) against one that returns the bound alone.

Both steps are compiled in one process and take turns in blocks of --steps steps, --blocks times,
so that a machine that slows down slows both alike; it prints the median time of a step of each and
the median and quartiles of the ratio of each pair of neighbouring blocks (parts / bound alone).

    python benchmarks/step_parts.py [--blocks 60] [--steps 30] [--images 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vaelab.config import make_config
from vaelab.data import load_raw, make_splits
from vaelab.training import DeviceSplit, new_training
from vaelab.training import step as step_module


def bound_alone(terms) -> dict[str, torch.Tensor]:
    return {"bound": terms.bound.detach().sum()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--steps", type=int, default=30, help="steps per block")
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    config = make_config(dict(model="cvae", latent_dim=40, hidden=(500, 500), batch_size=128, seed=0, compile="on"))
    data = DeviceSplit.from_split(make_splits(load_raw("mnist"), "dynamic", "train", args.images).train,
                                  torch.device("cpu"))
    variants = {"parts": step_module.step_sums, "bound alone": bound_alone}
    trainings = {}
    for name, sums in variants.items():  # each compiles with its own step_sums (a guard keeps them apart)
        step_module.step_sums = sums
        trainings[name] = new_training(config, torch.device("cpu"), dynamic=True, compile=True,
                                       train_images=args.images)
    milliseconds: dict[str, list[float]] = {name: [] for name in variants}
    for block in range(args.blocks + 1):  # block 0 compiles both
        for name in (variants if block % 2 else reversed(list(variants))):
            step_module.step_sums, training = variants[name], trainings[name]
            order = torch.randperm(args.images, generator=training.streams.order)[: 128 * args.steps]
            x, y = data.x.index_select(0, order), data.y.index_select(0, order)
            started = time.perf_counter()
            for k in range(args.steps):
                sums = training.step(x[k * 128 : (k + 1) * 128], y[k * 128 : (k + 1) * 128], training.streams)
                training.optimizer.step()
            sums["bound"].item()
            if block:
                milliseconds[name].append((time.perf_counter() - started) / args.steps * 1000)
    for name, values in milliseconds.items():
        print(f"{name:12s} median {statistics.median(values):.2f} ms per step")
    paired = [a / b for a, b in zip(milliseconds["parts"], milliseconds["bound alone"])]
    quartiles = statistics.quantiles(paired, n=4)
    print(f"parts / bound alone: median {statistics.median(paired):.3f} (quartiles {quartiles[0]:.3f}-"
          f"{quartiles[2]:.3f}) over {len(paired)} pairs of blocks")


if __name__ == "__main__":
    main()
