"""Training throughput: a tutorial-style loop against vaelab's trainer, same CVAE, same estimator.

Reference: torch DataLoader over a TensorDataset (shuffled), batch 128, Adam, `.item()` every step,
dynamic binarisation with torch.bernoulli, one-hot y concatenated. vaelab: `vaelab.train.train_epoch`
(data as device tensors, binarisation and order from one generator, a loss read back every 25 steps,
foreach Adam) at batch 128 and at vaelab's default batch size. Both: 500-500 ReLU, d = 40, ELBO
with one sample. Prints images/s, the ratios, and GFLOP/s against a measured matmul peak.

    python benchmarks/train_throughput.py [--images 20000] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ReferenceCVAE, machine, matmul_peak_gflops, mlp_flops_per_image

from vaelab.config import TrainConfig, make_config
from vaelab.data import load_raw, make_splits
from vaelab.models import build_model
from vaelab.train import DeviceSplit, train_epoch


def reference_rate(x, y, images, device, batch_size=128) -> float:
    torch.manual_seed(0)
    model = ReferenceCVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:images], y[:images]),
                                         batch_size=batch_size, shuffle=True)

    def epoch():
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = model.loss(torch.bernoulli(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()

    epoch()  # warm-up
    start = time.perf_counter()
    epoch()
    return images / (time.perf_counter() - start)


def vaelab_rate(data: DeviceSplit, images, batch_size) -> float:
    config = make_config({"batch_size": batch_size})
    torch.manual_seed(0)
    model = build_model(config.model_config()).to(data.x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    generator = torch.Generator(device=data.x.device).manual_seed(0)
    subset = DeviceSplit(data.x[:images], data.y[:images], data.binary)
    train_epoch(model, optimizer, subset, config, generator, 0, progress=False)  # warm-up
    start = time.perf_counter()
    train_epoch(model, optimizer, subset, config, generator, 1, progress=False)
    return images / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="training images per timed pass")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    splits = make_splits(load_raw("mnist"))
    data = DeviceSplit.from_split(splits.train, device)
    default_batch = TrainConfig().batch_size

    flops = 3 * mlp_flops_per_image([784 + 10, 500, 500, 80], [40 + 10, 500, 500, 784])  # forward + backward
    peak = matmul_peak_gflops() if device.type == "cpu" else float("nan")
    rates = {
        "reference loop, batch 128": reference_rate(data.x, data.y, args.images, device),
        "vaelab trainer, batch 128": vaelab_rate(data, args.images, 128),
        f"vaelab trainer, default batch {default_batch}": vaelab_rate(data, args.images, default_batch),
    }
    print(f"machine: {machine()}; {args.images} images per timed pass; matmul peak {peak:.0f} GFLOP/s")
    for name, rate in rates.items():
        achieved = rate * flops / 1e9
        print(f"{name:38s} {rate:9,.0f} images/s  {achieved:6.1f} GFLOP/s ({100 * achieved / peak:.0f}% of peak)")
    base = rates["reference loop, batch 128"]
    for name, rate in list(rates.items())[1:]:
        print(f"ratio {name} / reference loop: {rate / base:.2f}")


if __name__ == "__main__":
    main()
