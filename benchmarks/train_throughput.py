"""Training throughput: a tutorial-style loop against vaelab's trainer, same CVAE, same estimator.

Reference: torch DataLoader over a TensorDataset (shuffled), batch 128, Adam (torch's default
implementation), `.item()` every step, dynamic binarisation with torch.bernoulli, one-hot y
concatenated. vaelab: `vaelab.training.train_epoch` with the step `vaelab train` uses (data as device
tensors, binarisation and noise from one generator, fused Adam, a loss read back every 25 steps,
the loss and its gradients compiled into one program by torch.compile and torch.func), at batch
128, at batch 128 without compilation, and at vaelab's default batch size. Both: 500-500 ReLU,
d = 40, ELBO with one sample.

The variants take turns, one epoch each, for several rounds, and the median epoch of each counts:
a shared or throttled CPU then slows all of them alike instead of whichever ran at the time.
Prints images/s, seconds per epoch of MNIST's 50,000 training images, GFLOP/s against a measured
matmul peak (on a CPU), and the ratios last.

The last variant does only the step's matrix products, at the same shapes: the most any trainer
could reach, so its ratio is the ceiling for the others'.

    python benchmarks/train_throughput.py [--images 20000] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import ReferenceCVAE, machine, matmul_peak_gflops, mlp_flops_per_image, timed

from vaelab.config import TrainConfig, make_config
from vaelab.data import load_raw, make_splits
from vaelab.training import DeviceSplit, new_training, train_epoch

EPOCH = 50_000  # images in an epoch of `vaelab train` on MNIST (the training split)


def reference_epoch(x, y, device, batch_size=128):
    """One epoch of the tutorial loop per call."""
    torch.manual_seed(0)
    model = ReferenceCVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True)

    def epoch():
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = model.loss(torch.bernoulli(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()

    return epoch


def vaelab_epoch(data: DeviceSplit, batch_size: int, compile: bool):
    """One epoch of vaelab's trainer per call."""
    config = make_config({"batch_size": batch_size})
    t = new_training(config, data.x.device, dynamic=not data.binary, compile=compile)

    def epoch():
        train_epoch(t.step, t.optimizer, data, batch_size, t.streams)

    return epoch


def matmul_floor_epoch(images: int, device, batch_size=128):
    """The step's matrix products alone (forward and backward), a step's worth per batch: the floor.

    Same shapes as the CVAE's layers (784+10 -> 500 -> 500 -> 80; 40+10 -> 500 -> 500 -> 784): per
    layer the forward product, the weight gradient, and the input gradient except for the first
    encoder layer, whose input (the data) needs none. No implementation of this step can be faster.
    """
    layers = [(794, 500), (500, 500), (500, 80), (50, 500), (500, 500), (500, 784)]
    tensors = [(torch.randn(batch_size, k, device=device), torch.randn(n, k, device=device),
                torch.randn(batch_size, n, device=device)) for k, n in layers]

    def epoch():
        for _ in range(0, images, batch_size):
            for index, (inputs, weight, grad) in enumerate(tensors):
                inputs @ weight.t()
                grad.t() @ inputs
                if index != 0:
                    grad @ weight

    return epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs of each variant, taken in turns")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    train = make_splits(load_raw("mnist")).train
    data = DeviceSplit.from_split(train, device)
    data = DeviceSplit(data.x[: args.images], data.y[: args.images], data.binary)
    default_batch = TrainConfig().batch_size

    variants = {
        "reference loop, batch 128": reference_epoch(data.x, data.y, device),
        "vaelab trainer, batch 128": vaelab_epoch(data, 128, compile=True),
        "vaelab trainer, batch 128, not compiled": vaelab_epoch(data, 128, compile=False),
    }
    variants["matrix products alone, batch 128 (the floor)"] = matmul_floor_epoch(args.images, device)
    if default_batch != 128:
        variants[f"vaelab trainer, default batch {default_batch}"] = vaelab_epoch(data, default_batch, compile=True)
    for name, epoch in variants.items():  # warm-up, and torch.compile's start-up
        started = time.perf_counter()
        epoch()
        print(f"warm-up epoch, {name}: {time.perf_counter() - started:.1f} s", flush=True)
    seconds = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, epoch in variants.items():
            seconds[name].append(timed(epoch, device))
    rates = {name: args.images / statistics.median(times) for name, times in seconds.items()}

    flops = 3 * mlp_flops_per_image([784 + 10, 500, 500, 80], [40 + 10, 500, 500, 784])  # forward + backward
    peak = matmul_peak_gflops() if device.type == "cpu" else float("nan")
    print(f"machine: {machine()}; {args.images} images per epoch, median of {args.rounds} epochs taken in turns; "
          f"matmul peak {peak:.0f} GFLOP/s")
    for name, rate in rates.items():
        achieved = rate * flops / 1e9
        spread = max(seconds[name]) / min(seconds[name])
        print(f"{name:42s} {rate:9,.0f} images/s  {EPOCH / rate:6.2f} s per epoch  {achieved:6.1f} GFLOP/s "
              f"({100 * achieved / peak:.0f}% of peak)  slowest/fastest epoch {spread:.2f}")
    base = rates["reference loop, batch 128"]
    for name, rate in list(rates.items())[1:]:
        print(f"ratio {name} / reference loop: {rate / base:.2f}")


if __name__ == "__main__":
    main()
