"""Shared pieces of the benchmarks: the tutorial-style reference CVAE, a matmul peak estimate, and the flags and
shared settings of the benchmarks that train runs."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


class ReferenceCVAE(nn.Module):
    """The CVAE as common tutorials write it: one-hot y concatenated to the inputs, nn.Sequential MLPs."""

    def __init__(self, latent_dim=40, hidden=500, classes=10, data_dim=784):
        super().__init__()
        self.classes = classes
        self.encoder = nn.Sequential(nn.Linear(data_dim + classes, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim + classes, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, data_dim))

    def loss(self, x, y):
        """Negative ELBO per image (nats), one reparameterised sample, analytic KL; x [batch, 1, 28, 28] or flat."""
        x = x.flatten(1)
        onehot = F.one_hot(y, self.classes).float()
        mu, log_var = self.encoder(torch.cat([x, onehot], 1)).chunk(2, 1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        logits = self.decoder(torch.cat([z, onehot], 1))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum()
        return (recon + kl) / x.shape[0]


def mlp_flops_per_image(widths_encoder, widths_decoder) -> float:
    """Forward FLOPs (2 per multiply-add) of two MLPs given their layer widths."""
    total = 0
    for widths in (widths_encoder, widths_decoder):
        total += sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    return float(total)


def matmul_peak_gflops(seconds: float = 1.5, size: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """The machine's matmul rate in `dtype` on a large square product (CPU): an achievable-peak estimate."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def timed(function, device: torch.device) -> float:
    """Seconds that function() takes on `device`, waiting for a GPU's queued work before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def add_run_arguments(parser, out: str) -> None:
    """The flags of a benchmark that trains runs: --set key=value (repeatable), --device, --out."""
    parser.add_argument("--set", action="append", default=[], help="another setting for every run, key=value")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=out)


def parse_settings(pairs: list[str]) -> dict:
    """Settings from "key=value" strings (keys as in a config file or as attributes), checked as vaelab checks them."""
    from vaelab.config import SETTINGS, check_value

    settings = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        name = key.strip().replace("-", "_")
        if name not in SETTINGS:
            raise SystemExit(f"{pair}: no such setting")
        kind = SETTINGS[name].kind
        settings[name] = check_value(name, kind(value) if kind in (int, float) else value)
    return settings


def common_settings(args) -> dict:
    """The settings every run of the benchmark shares, from --set and --device, checked as vaelab checks them."""
    settings = parse_settings(args.set)
    settings.setdefault("device", args.device)
    return settings
