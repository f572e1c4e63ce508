"""The default `vaelab evaluate` against its floor: the matrix products of the decoder passes it needs.

The evaluation is `evaluate_model` as `vaelab evaluate` runs it (K importance samples for
log p(x | y), class_samples for every class, the true class's taken from its K; the weights through
torch.compile, whose start-up is timed apart). The floor is what no evaluation of these estimators
can beat on this machine: the decoder's matrix products (and convolutions) alone, with the shapes
the evaluation gives them and as many of them, timed in the same run. It is found without knowing
the network: the evaluation of a few images records the shapes of the decoder's inputs, one
decoder pass per shape records its matrix products, and the floor replays those products.

Evaluation and floor take turns on slices of the test set, so drift on a shared machine hits
both alike; the ratio is their sums' and the median of the rounds'. The model is the default CVAE,
or another with `--set key=value` (repeatable: `--set network=conv`), with the weights from --run
DIR if given, else the initial ones (speed does not depend on the weights).

    python benchmarks/eval_throughput.py [--samples 1000] [--images 10000] [--rounds 5] [--run DIR]
        [--set key=value] [--compile auto]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from common import machine, parse_settings
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.api import load_run
from vaelab.config import make_config
from vaelab.data import load_raw, make_splits
from vaelab.inference.evaluation import COMPILE_FROM, evaluate_model
from vaelab.runs import new_model
from vaelab.runtime.compilation import use_compile
from vaelab.training import DeviceSplit

aten = torch.ops.aten


def _product(input, weight, *rest, **kwargs):
    """A linear layer's matrix product without its bias: input [..., k] @ weight.T [k, n]."""
    return torch.matmul(input, weight.t())


def _product_of_addmm(bias, a, b, **kwargs):
    return torch.mm(a, b)


# the operators that are matrix products or convolutions, and how to run the product alone; which of
# them a network reaches depends on the mode (inference keeps aten.linear whole, autograd splits it)
PRODUCTS = {aten.linear.default: _product, aten.addmm.default: _product_of_addmm, aten.matmul.default: torch.matmul,
            aten.mm.default: torch.mm, aten.bmm.default: torch.bmm, aten.convolution.default: aten.convolution.default,
            aten.conv2d.default: aten.conv2d.default,
            aten.conv_transpose2d.input: aten.conv_transpose2d.input}


class RecordProducts(TorchDispatchMode):
    """Keeps every matrix product or convolution run under it, with its arguments, to run again alone."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            self.calls.append((PRODUCTS[func], args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def decoder_inputs(model, data: DeviceSplit, samples: int, batch: int) -> Counter:
    """(z shape, y shape) -> how many decoder calls one test batch of `batch` images makes."""
    seen = Counter()
    decoder = model.decoder

    def counting(z, y=None):
        seen[(tuple(z.shape), None if y is None else tuple(y.shape))] += 1
        return decoder(z, y)

    model.decoder = counting
    try:
        evaluate_model(model, DeviceSplit(data.x[:batch], data.y[:batch], data.binary), iw_samples=samples,
                       batch_size=batch, compile="off")
    finally:
        del model.decoder
    return seen


@torch.inference_mode()
def floor_calls(model, shapes: Counter, device) -> list:
    """The matrix products of one test batch's decoder passes: [(func, args, kwargs)] with repeats."""
    calls = []
    for (z_shape, y_shape), count in shapes.items():
        z = torch.randn(z_shape, device=device)
        y = None if y_shape is None else torch.zeros(y_shape, dtype=torch.long, device=device)
        with RecordProducts() as record:
            model.decoder(z, y).mean
        calls += record.calls * count
    return calls


@torch.inference_mode()
def floor_seconds(calls: list, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        for func, args, kwargs in calls:
            func(*args, **kwargs)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="importance samples K (1000, as vaelab evaluate)")
    parser.add_argument("--images", type=int, default=10_000, help="test images in all (10,000)")
    parser.add_argument("--rounds", type=int, default=5, help="turns of evaluation and floor (5)")
    parser.add_argument("--run", help="a run directory whose best weights to use")
    parser.add_argument("--set", action="append", default=[], help="a setting of the model, key=value")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="as vaelab evaluate's --compile (auto: compiled from 2 million decoder passes on)")
    args = parser.parse_args()
    device = torch.device("cpu")
    model = load_run(args.run, device="cpu").model if args.run else new_model(make_config(parse_settings(args.set)))
    model.eval()
    test = DeviceSplit.from_split(make_splits(load_raw("mnist")).test, device)
    batch = 100  # as vaelab evaluate
    shapes = decoder_inputs(model, test, args.samples, batch)
    calls = floor_calls(model, shapes, device)
    passes = sum(count * torch.Size(z[:-1]).numel() for (z, _), count in shapes.items()) // batch
    per_round = args.images // args.rounds // batch * batch
    compile = "on" if use_compile(args.compile, args.images * passes, COMPILE_FROM) else "off"  # as vaelab evaluate

    warm = time.perf_counter()  # compilation, as the first evaluation in a process pays it
    evaluate_model(model, DeviceSplit(test.x[:batch], test.y[:batch], test.binary), iw_samples=args.samples,
                   compile=compile)
    compile_seconds = time.perf_counter() - warm
    evaluation, floor = [], []
    for i in range(args.rounds):
        part = slice(i * per_round, (i + 1) * per_round)
        result = evaluate_model(model, DeviceSplit(test.x[part], test.y[part], test.binary), iw_samples=args.samples,
                                compile=compile)
        evaluation.append(result["seconds"])
        floor.append(floor_seconds(calls, per_round // batch))
        print(f"round {i + 1}: evaluation {evaluation[-1]:6.1f} s, floor {floor[-1]:6.1f} s, "
              f"ratio {evaluation[-1] / floor[-1]:.3f}", flush=True)
    images = per_round * args.rounds
    scale = 10_000 / images
    print(f"machine: {machine()}; K = {args.samples}, {passes} decoder passes per test image "
          f"({', '.join(f'{count} x z {list(z)}' for (z, _), count in shapes.items())} per batch of {batch}), "
          f"compiled: {result['compiled']}")
    print(f"evaluation: {sum(evaluation):.1f} s for {images} images, {images * passes / sum(evaluation):,.0f} "
          f"decoder passes/s; 10,000 images: {sum(evaluation) * scale:.1f} s + {compile_seconds:.1f} s compilation")
    print(f"floor (the decoder's {len(calls) // sum(shapes.values())} matrix products per pass alone): "
          f"{sum(floor):.1f} s; 10,000 images: {sum(floor) * scale:.1f} s")
    ratios = [e / f for e, f in zip(evaluation, floor)]
    print(f"evaluation / floor: {sum(evaluation) / sum(floor):.3f} (rounds: median {statistics.median(ratios):.3f}, "
          f"{min(ratios):.3f}-{max(ratios):.3f}); with compilation: "
          f"{(sum(evaluation) * scale + compile_seconds) / (sum(floor) * scale):.3f}")


if __name__ == "__main__":
    main()
