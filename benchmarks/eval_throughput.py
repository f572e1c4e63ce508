"""Importance-sampled log-likelihood, K = 1000 over the MNIST test set: vaelab against straightforward code.

vaelab: `objectives.log_likelihood_is` as `vaelab evaluate` runs it (100 images x 40 samples per
chunk, weights through torch.compile; the compile time is included). Straightforward, on a subset:
(a) one test batch of 100 at a time with all K samples at once, (b) a Python loop over the K
samples. All use the default CVAE (500-500 ReLU, d = 40; weights from --run DIR if given, else
the initial ones: speed does not depend on the weights). Prints seconds, decoder evaluations per
second and the ratios.

    python benchmarks/eval_throughput.py [--samples 1000] [--images 10000] [--run runs/cvae-mnist]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from common import machine

from vaelab import objectives
from vaelab.api import load_run
from vaelab.config import TrainConfig
from vaelab.data import load_raw, make_splits
from vaelab.evaluate import ROWS_PER_CHUNK
from vaelab.models import build_model
from vaelab.train import DeviceSplit


def vaelab_seconds(model, x, y, samples, compile, batch=100) -> float:
    generator = torch.Generator().manual_seed(0)
    log_weights = objectives.make_log_weights(model, compile=compile)
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        objectives.log_likelihood_is(model, x[i : i + batch], y[i : i + batch], samples, generator,
                                     ROWS_PER_CHUNK // batch, log_weights)
    return time.perf_counter() - start


def plain_log_weights(model, xb, yb, z, q):
    """log p(x|z,y) + log p(z) - log q(z|x,y) written out the plain way: [samples, batch] or [batch]."""
    logits = model.decoder_net(z, yb)
    log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").sum(-1)
    return log_px + model.prior().log_prob(z) - q.log_prob(z)


@torch.inference_mode()
def all_at_once_seconds(model, x, y, samples, batch=100) -> float:
    """One test batch at a time, all K samples decoded in one go."""
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        q = model.encoder(xb, yb)
        z = q.base_dist.loc + q.base_dist.scale * torch.randn((samples,) + q.base_dist.loc.shape)
        torch.logsumexp(plain_log_weights(model, xb, yb, z, q), 0) - math.log(samples)
    return time.perf_counter() - start


@torch.inference_mode()
def loop_seconds(model, x, y, samples, batch=100) -> float:
    """One test batch at a time, a Python loop over the K samples."""
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        q = model.encoder(xb, yb)
        weights = [plain_log_weights(model, xb, yb, q.rsample(), q) for _ in range(samples)]
        torch.logsumexp(torch.stack(weights), 0) - math.log(samples)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--subset", type=int, default=500, help="images for the straightforward versions")
    parser.add_argument("--run", help="a CVAE run directory whose best weights to use")
    args = parser.parse_args()
    model = load_run(args.run, device="cpu").model if args.run else build_model(TrainConfig().model_config()).eval()
    test = DeviceSplit.from_split(make_splits(load_raw("mnist")).test, torch.device("cpu"))
    x, y = test.x[: args.images], test.y[: args.images]
    k = args.samples
    results = {
        "vaelab (compiled)": (vaelab_seconds(model, x, y, k, compile=True), args.images),
        "vaelab (eager)": (vaelab_seconds(model, x[: args.subset * 2], y[: args.subset * 2], k, compile=False),
                           args.subset * 2),
        "one batch at a time, all K at once": (all_at_once_seconds(model, x[: args.subset], y[: args.subset], k),
                                               args.subset),
        "Python loop over the K samples": (loop_seconds(model, x[: args.subset // 5], y[: args.subset // 5], k),
                                           args.subset // 5),
    }
    print(f"machine: {machine()}; K = {k}")
    rates = {}
    for name, (seconds, images) in results.items():
        rates[name] = images * k / seconds
        print(f"{name:36s} {images:6d} images {seconds:8.1f} s  {rates[name]:9,.0f} decoder evaluations/s")
    whole = results["vaelab (compiled)"]
    print(f"vaelab, whole test set ({whole[1]} images, K = {k}): {whole[0]:.1f} s including compilation")
    for name in list(rates)[1:]:
        print(f"ratio vaelab (compiled) / {name}: {rates['vaelab (compiled)'] / rates[name]:.2f}")


if __name__ == "__main__":
    main()
