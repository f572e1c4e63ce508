"""Training and evaluation speed of each network by layout and precision, against the MLP, in one run.

For every network asked for (mlp, conv, resnet; the default CVAE's other settings, batch 128), the
variants take turns, one timed stretch each, for several rounds, and the median of each counts:

    plain maps          the feature maps laid out (N, C, H, W), as vaelab did before channels-last
    channels-last       what vaelab does now (conv and resnet): the same values, (N, H, W, C) in memory
    channels-last bf16  the same with --precision bf16 (training only: evaluation stays float32)

The MLP has no maps: its variants are float32 and bf16. Training is vaelab's step as `vaelab train`
runs it (compiled with --compile on, the default here), on real MNIST images; evaluation is
`evaluate_model` with --samples importance samples per image (compiled likewise). Prints images/s
and the ratios: each variant against the network's first, and each network's against the MLP's.
On a CPU it also prints what each network's training step asks of the machine: its floating-point
operations per image (counted by torch.utils.flop_counter on one eager step: the matrix products
and convolutions, forward and backward) and the rate each variant reaches, against the machine's
rate on one large matrix product in the same precision (measured in the same run): how far each
is from the most its products could give.

    python benchmarks/network_throughput.py [--networks mlp,conv,resnet] [--images 5120] [--eval-images 100]
        [--samples 100] [--rounds 5] [--compile on] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine, matmul_peak_gflops, timed
from torch.utils.flop_counter import FlopCounterMode

from vaelab.config import make_config
from vaelab.data import load_raw, make_splits
from vaelab.inference.evaluation import evaluate_model
from vaelab.models.layers import Network
from vaelab.training import DeviceSplit, new_training, train_epoch

VARIANTS = {"plain maps": (torch.contiguous_format, "float32"), "channels-last": (torch.channels_last, "float32"),
            "channels-last bf16": (torch.channels_last, "bf16")}
MLP_VARIANTS = {"float32": (None, "float32"), "bf16": (None, "bf16")}


def make_variant(network: str, layout, precision: str, train: DeviceSplit, test: DeviceSplit, samples: int,
                 compile: bool):
    """(one training epoch, one evaluation) of a fresh default CVAE with `network`, as functions."""
    config = make_config({"network": network, "batch_size": 128, "precision": precision})
    t = new_training(config, train.x.device, dynamic=True, compile=compile)
    if layout is not None:
        for module in t.model.modules():
            if isinstance(module, Network) and hasattr(module, "memory_format"):
                module.memory_format = layout

    def epoch():
        train_epoch(t.step, t.optimizer, train, 128, t.streams)

    def evaluation():
        evaluate_model(t.model, test, iw_samples=samples, compile="on" if compile else "off")

    return epoch, evaluation


def step_flops(network: str, train: DeviceSplit) -> float:
    """Floating-point operations of one eager training step of the default CVAE with `network`, per image."""
    config = make_config({"network": network, "batch_size": 128})
    t = new_training(config, train.x.device, dynamic=True, compile=False)
    one_batch = DeviceSplit(train.x[:128], train.y[:128], train.binary)
    with FlopCounterMode(display=False) as counter:
        train_epoch(t.step, t.optimizer, one_batch, 128, t.streams)
    return counter.get_total_flops() / 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="mlp,conv,resnet")
    parser.add_argument("--images", type=int, default=5120, help="training images per timed epoch")
    parser.add_argument("--eval-images", type=int, default=100, help="test images per timed evaluation (0: none)")
    parser.add_argument("--samples", type=int, default=100, help="importance samples per test image")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", choices=("on", "off"), default="on")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    splits = make_splits(load_raw("mnist"))
    full = DeviceSplit.from_split(splits.train, device)
    train = DeviceSplit(full.x[: args.images], full.y[: args.images], full.binary)
    every_test = DeviceSplit.from_split(splits.test, device)
    test = DeviceSplit(every_test.x[: args.eval_images], every_test.y[: args.eval_images], every_test.binary)
    variants = {}
    for network in args.networks.split(","):
        for name, (layout, precision) in (MLP_VARIANTS if network == "mlp" else VARIANTS).items():
            variants[(network, name)] = make_variant(network, layout, precision, train, test, args.samples,
                                                     args.compile == "on")
    for key, (epoch, evaluation) in variants.items():  # warm-up: torch.compile's start-up
        started = time.perf_counter()
        epoch()
        if args.eval_images:
            evaluation()
        print(f"warm-up, {key[0]} {key[1]}: {time.perf_counter() - started:.1f} s", flush=True)
    train_seconds = {key: [] for key in variants}
    eval_seconds = {key: [] for key in variants}
    for _ in range(args.rounds):
        for key, (epoch, evaluation) in variants.items():
            train_seconds[key].append(timed(epoch, device))
            if args.eval_images:
                eval_seconds[key].append(timed(evaluation, device))
    print(f"machine: {machine()}; {args.images} training images per epoch, {args.eval_images} test images x "
          f"{args.samples} samples per evaluation; compile {args.compile}; median of {args.rounds} rounds in turns")
    training = {key: args.images / statistics.median(times) for key, times in train_seconds.items()}
    evaluating = {key: args.eval_images / statistics.median(times) for key, times in eval_seconds.items() if times}
    firsts = {}
    for (network, name), rate in training.items():
        first = firsts.setdefault(network, (network, name))
        line = (f"{network:7s} {name:20s} train {rate:8,.0f} images/s (x{rate / training[first]:.2f}), "
                f"{50_000 / rate:6.2f} s per 50,000-image epoch")
        if (network, name) in evaluating:
            rate_eval = evaluating[(network, name)]
            line += f"   evaluate {rate_eval:7,.1f} images/s (x{rate_eval / evaluating[first]:.2f})"
        print(line)
    mlp = training.get(("mlp", "float32"))
    if mlp:
        for (network, name), rate in training.items():
            if network != "mlp":
                print(f"ratio {network} {name} / mlp float32, training: {rate / mlp:.2f}")
    if device.type == "cpu":
        peaks = {"float32": matmul_peak_gflops(), "bf16": matmul_peak_gflops(dtype=torch.bfloat16)}
        print(f"one 2048 x 2048 matrix product: {peaks['float32']:.0f} GFLOP/s in float32, {peaks['bf16']:.0f} in bf16")
        for network in dict.fromkeys(network for network, _ in training):
            flops = step_flops(network, train)
            for (net, name), rate in training.items():
                if net == network:
                    reached = flops * rate / 1e9
                    peak = peaks["bf16" if "bf16" in name else "float32"]
                    print(f"{network:7s} {name:20s} {flops / 1e6:6.1f} MFLOP per image, {reached:5.0f} GFLOP/s "
                          f"= {reached / peak:.2f} of the large product's rate")


if __name__ == "__main__":
    main()
