"""`vaelab evaluate --ais` against its floor: the matrix products of the gradient evaluations it needs.

AIS makes, per chain (and per class of a class-conditional model), 1 + (STEPS - 1) x LEAPFROG
evaluations of log w(ε) and its gradient in ε, plus those of the one pilot chain that tunes the
step sizes: each a decoder pass forwards and one backwards to its input. The floor is those passes'
matrix products alone (forward and backward, recorded from one evaluation of the gradient on the
very batch shapes AIS uses), replayed as often as AIS makes them, timed in the same run. AIS (as
`ais_terms` runs it, compiled when `vaelab evaluate` would compile it) and the floor take turns on
slices of the test set; the ratio is their sums' and the median of the rounds'.

    python benchmarks/ais_throughput.py [--run DIR] [--images 40] [--steps 100] [--leapfrog 10]
        [--chains 16] [--rounds 3]

Without --run the model is the default CVAE with its initial weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine
from eval_throughput import RecordProducts, floor_seconds

from vaelab.api import load_run
from vaelab.config import TrainConfig
from vaelab.data import load_raw, make_splits
from vaelab.inference import annealing
from vaelab.inference.evaluation import COMPILE_FROM, ROWS_PER_CHUNK, ais_terms
from vaelab.models import class_conditional
from vaelab.runs import new_model
from vaelab.runtime.compilation import use_compile
from vaelab.training import DeviceSplit


def gradient_products(model, x: torch.Tensor, y: torch.Tensor | None, chains: int) -> list:
    """The matrix products of one evaluation of log w(ε) and its gradient for `chains` chains of the
    images x (labels y): [(func, args, kwargs)]."""
    with annealing.frozen(model):
        log_w = annealing.model_log_weights(model, x, y)
        eps = torch.randn(chains, x.shape[0], *model.noise_shape())
        with RecordProducts() as record:
            annealing.log_weight_and_gradient(log_w, eps)
    return record.calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run directory whose best weights to use")
    parser.add_argument("--images", type=int, default=40, help="test images in all, over the rounds (40)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = load_run(args.run, device="cpu").model if args.run else new_model(TrainConfig())
    model.eval()
    test = DeviceSplit.from_split(make_splits(load_raw("mnist")).test, torch.device("cpu"))
    settings = annealing.AisSettings(args.steps, args.leapfrog, args.chains)
    labelled = class_conditional(model)
    classes = model.num_classes if labelled else 1
    batch = max(1, ROWS_PER_CHUNK // (args.chains * classes))  # images per batch, as ais_terms takes them
    per_round = max(batch, args.images // args.rounds // batch * batch)
    x, y = test.x[:batch], test.y[:batch]
    if labelled:
        x, y = x.repeat_interleave(classes, 0), torch.arange(classes).repeat(batch)
    else:
        y = None
    evaluations = 1 + (args.steps - 1) * args.leapfrog  # per chain: the start, then STEPS - 1 HMC moves
    forward_chains = gradient_products(model, x, y, args.chains)
    pilot = gradient_products(model, x, y, 1)
    work = per_round * classes * (args.chains + 1) * evaluations  # gradient evaluations of one row each
    compile = use_compile("auto", args.images * classes * args.chains * args.steps * args.leapfrog, COMPILE_FROM)

    def floor(batches: int) -> float:
        return floor_seconds(forward_chains, batches * evaluations) + floor_seconds(pilot, batches * evaluations)

    warm = time.perf_counter()  # compilation, as the first AIS in a process pays it
    ais_terms(model, DeviceSplit(test.x[:batch], test.y[:batch], test.binary),
              annealing.AisSettings(3, args.leapfrog, args.chains), batch, iw_samples=1, compile=compile)
    compile_seconds = time.perf_counter() - warm
    timings, floors = [], []
    for i in range(args.rounds):
        part = slice(i * per_round, (i + 1) * per_round)
        started = time.perf_counter()
        result = ais_terms(model, DeviceSplit(test.x[part], test.y[part], test.binary), settings, per_round,
                           iw_samples=1, compile=compile)
        timings.append(time.perf_counter() - started)
        floors.append(floor(per_round // batch))
        print(f"round {i + 1}: AIS {timings[-1]:7.1f} s, floor {floors[-1]:7.1f} s, ratio "
              f"{timings[-1] / floors[-1]:.3f}; acceptance {result['acceptance']:.2f}", flush=True)
    images = per_round * args.rounds
    per_image = sum(timings) / images
    thousand = per_image * 1000 * (1 + 999 * args.leapfrog) / evaluations
    print(f"machine: {machine()}; {type(model).__name__}, {classes} class(es) per image, {args.chains} chains + 1 pilot, "
          f"{args.steps} steps of {args.leapfrog} leapfrog steps; {batch} images ({x.shape[0]} rows) per batch; "
          f"compiled: {compile} ({compile_seconds:.1f} s before the rounds)")
    print(f"AIS: {sum(timings):.1f} s for {images} images, {per_image:.2f} s per image; "
          f"1,000 images with 1,000 steps: about {thousand / 3600:.1f} h")
    print(f"floor (the {len(forward_chains)} matrix products of a gradient evaluation, forward and backward, "
          f"{evaluations} evaluations per chain): {sum(floors):.1f} s")
    ratios = [t / f for t, f in zip(timings, floors)]
    print(f"AIS / floor: {sum(timings) / sum(floors):.3f} (rounds: median {statistics.median(ratios):.3f}, "
          f"{min(ratios):.3f}-{max(ratios):.3f}); {work:,} gradient evaluations of one chain row per round")


if __name__ == "__main__":
    main()
