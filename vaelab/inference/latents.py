"""What every latent does, for any family that shows its latents (`models.ShowsLatents`): its active
units, the KL of each unit, and the mutual information between the images and all the latents.

- Active units (Burda et al. 2015): unit u is active when A_u = Cov_x(E_q[u | x]) > 0.01, the
  variance over the test images of the posterior mean. Where a family gives the mean in closed
  form (a Gaussian layer's μ) it is used as it is; elsewhere (a flow, the layers below the one q
  reaches first) it is the mean of S draws, whose variance over the images is A_u + E_x[Var_q(u | x)] / S,
  so the estimate subtracts the images' mean within-image variance over S (unbiased for A_u).
- The KL of each unit: E_x E_q[KL(q(u_i | ...) ‖ p(u_i | ...))] in closed form given the draws of the
  latents it conditions on, where the family has one (`models.Latent.kl_dims`), nats per image.
- I(x; latents) = E_x KL(q(v | x) ‖ p(v)) - KL(q(v) ‖ p(v)) with q(v) = (1/N) Σ_j q(v | x_j) the
  aggregate posterior of N test images, estimated as (1/N) Σ_i [log q(v_i | x_i) - log q(v_i)] at one
  draw v_i ~ q(v | x_i) per image (He et al. 2019's `calc_mi` takes the same aggregate over a batch,
  with q's entropy in closed form). For x one of those N images drawn uniformly it is the mutual
  information itself, up to its Monte-Carlo noise (`standard_error`), and it can never exceed log N
  (`cap`). As an estimate of the information the latents carry about an image of the data
  distribution it is a lower bound on average (the InfoNCE bound, Oord et al. 2018; Poole et al.
  2019): close when that information is well below log N, and of no use near the cap, where the
  true value may lie anywhere above. For a family with a class label q reads the image's label too,
  so the figure is I((x, y); latents).
"""

from __future__ import annotations

import math
import time

import torch

from ..models import Model, ShowsLatents, read
from ..runtime.precision import in_float32
from .batches import chunk_generator
from .bounds import draw_noise, fixing_prior

ACTIVE = 0.01  # Burda et al.'s threshold on Cov_x(E_q[u | x])
DRAWS = 16  # draws per image for the means a family has no closed form of, and for the KL of each unit
LATENT_STREAM = 1 << 42  # the chunk numbers of the diagnostics' generators start here
PAIRS = 1 << 15  # image pairs scored at once for I(x; latents)


def activity(means: torch.Tensor, within: torch.Tensor | None = None, draws: int = 1) -> torch.Tensor:
    """A_u = Cov_x(E_q[u | x]) of every unit: means [n, d], each image's posterior mean (exact, or of
    `draws` draws with `within` [n, d] their unbiased variance about it): [d]."""
    spread = means.double().var(dim=0)
    if within is not None:
        spread = spread - within.double().mean(dim=0) / draws
    return spread


def information(own: torch.Tensor, log_mixture: torch.Tensor) -> tuple[float, float]:
    """(I, its standard error) from own [n] = log q(v_i | x_i) and log_mixture [n] = log (1/n) Σ_j q(v_i | x_j)
    at one draw v_i of every image: the mean of their differences, nats."""
    gaps = (own - log_mixture).double()
    return gaps.mean().item(), (gaps.std().item() / math.sqrt(len(gaps)) if len(gaps) > 1 else float("nan"))


@torch.no_grad()
@fixing_prior
@in_float32
def latent_terms(model: Model, data, seed: int = 0, batch_size: int = 500, information_images: int | None = None,
                 parts: dict[str, float] | None = None) -> dict:
    """eval.json's "latents" for `model` on `data` (a `runtime.devices.DeviceSplit`): {"layers": {name:
    {"units", "active", "activity" [d], "mean" ("exact" or "draws"), "kl" (nats per image, from
    `parts`, the evaluation's bound parts, where given), "kl_units" [d] or None}}, "information": {"value",
    "standard_error", "cap" (log N), "images" N}, "threshold", "draws", "seconds"}, or {} for a family
    that does not show its latents. q reads `data.read` and the labels; batch b draws with
    `chunk_generator(seed, LATENT_STREAM + b)`. information_images: N (default: the family's
    `information_images`, None meaning every image)."""
    if not isinstance(model, ShowsLatents):
        return {}
    model.eval()
    started = time.perf_counter()
    n = data.x.shape[0]
    wanted = model.information_images if information_images is None else information_images
    keep = min(n, wanted or n)
    layers, values, passes = unit_terms(model, data, seed, batch_size, keep, parts)
    own, log_mixture, dropped = pair_terms(model, passes, values, keep)
    value, error = information(own, log_mixture)
    return {"layers": layers, "information": {"value": value, "standard_error": error, "cap": math.log(keep),
                                              "images": keep, "pairs_not_finite": dropped},
            "threshold": ACTIVE, "draws": DRAWS, "seconds": time.perf_counter() - started}


def unit_terms(model: ShowsLatents, data, seed: int, batch_size: int, keep: int = 0,
               parts: dict[str, float] | None = None) -> tuple[dict, dict[str, torch.Tensor], list]:
    """(eval.json's "layers" (see `latent_terms`), one draw of every latent for the first `keep` images
    {name: [keep, dim]}, the posterior passes of the batches that hold them) in one pass over `data`."""
    n, device = data.x.shape[0], data.x.device
    means, within, units, values, passes, part = {}, {}, {}, {}, [], {}
    for batch, start in enumerate(range(0, n, batch_size)):
        rows = slice(start, min(n, start + batch_size))
        x, y = data.x[rows], data.y[rows]
        posterior = model.posterior(read(x, data.seen_rows(rows)), y)
        noise = draw_noise(model, DRAWS, x.shape[0], chunk_generator(seed, LATENT_STREAM + batch, device), device,
                           x.dtype)
        for name, latent in model.shown(x, y, posterior, noise).items():
            if latent.mean is not None:
                means.setdefault(name, []).append(latent.mean)
            else:
                means.setdefault(name, []).append(latent.draws.mean(0))
                within.setdefault(name, []).append(latent.draws.var(0))
            if latent.kl_dims is not None:
                units.setdefault(name, []).append(latent.kl_dims.double().mean(0).sum(0))
            if start < keep:
                values.setdefault(name, []).append(latent.draws[0])
            part[name] = latent.part
        if start < keep:
            passes.append(posterior)
    layers = {}
    for name, shown in means.items():
        spread = activity(torch.cat(shown), torch.cat(within[name]) if name in within else None, DRAWS)
        layers[name] = {"units": spread.numel(), "active": int((spread > ACTIVE).sum()), "activity": spread.tolist(),
                        "mean": "draws" if name in within else "exact",
                        "kl": None if parts is None else parts.get(part[name]),
                        "kl_units": (torch.stack(units[name]).sum(0) / n).tolist() if name in units else None}
    return layers, {name: torch.cat(found)[:keep] for name, found in values.items()}, passes


@torch.no_grad()
@fixing_prior
@in_float32
def active_units(model: Model, data, seed: int = 0, batch_size: int = 500) -> dict[str, int]:
    """{latent name: its active units on `data`} (`latent_terms`' "active"), {} for a family that does not
    show its latents: one pass of q over the images, for TensorBoard's view of every epoch."""
    if not isinstance(model, ShowsLatents):
        return {}
    model.eval()
    return {name: layer["active"] for name, layer in unit_terms(model, data, seed, batch_size)[0].items()}


def pair_terms(model: ShowsLatents, passes: list[tuple[torch.Tensor, ...]], values: dict[str, torch.Tensor],
               count: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(log q(v_i | x_i) [count], log (1/count) Σ_j q(v_i | x_j) [count], how many pairs came out
    non-finite and were counted as q = 0: an IAF inverted at another image's context can overflow)
    for the first `count` images,
    from their posterior passes (in batches, as `latent_terms` made them) and one value v_i of every
    latent each, scoring `PAIRS` pairs of images at a time."""
    posterior = tuple(torch.cat(parts)[:count] for parts in zip(*passes))
    columns = min(count, 1024)
    rows = max(1, PAIRS // columns)
    own, log_mixture, dropped = [], [], 0
    for i in range(0, count, rows):
        mine = {name: value[i : i + rows] for name, value in values.items()}
        found = []
        for j in range(0, count, columns):
            block = model.log_posterior_pairs(tuple(part[j : j + columns] for part in posterior), mine)
            found.append(block)
        scores = torch.cat(found, dim=1)  # [rows, count]
        # an IAF inverted at another image's context can overflow: that image's q there counts as 0
        broken = ~torch.isfinite(scores)
        dropped += int(broken.sum())
        scores = scores.masked_fill(broken, -math.inf)
        own.append(scores[:, i : i + scores.shape[0]].diagonal())
        log_mixture.append(torch.logsumexp(scores.double(), dim=1) - math.log(count))
    return torch.cat(own), torch.cat(log_mixture), dropped
