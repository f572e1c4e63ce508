"""What a trained model holds, as arrays for the figures: latent codes, their 2-D projection, the
decoded manifold of a 2-D latent space (on the prior's quantiles), and the CVAE's style transfer.
Pure computation, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Independent

from ..models import Model, class_conditional, decoder_mean


def label_classes(model: Model) -> int:
    """How many class labels y the model is conditioned on: 0 for a model that takes no label."""
    return model.num_classes if class_conditional(model) else 0


@torch.no_grad()
def latent_means(model: Model, x: torch.Tensor, y: torch.Tensor | None, batch_size: int = 1000) -> np.ndarray:
    """The codes of images x [n, ...] (`Model.code`: the posterior means for a Gaussian q): (n, code_dim)."""
    model.eval()
    parts = []
    for start in range(0, x.shape[0], batch_size):
        labels = None if y is None else y[start : start + batch_size]
        parts.append(model.code(x[start : start + batch_size], labels).cpu())
    return torch.cat(parts).numpy()


@dataclass(frozen=True)
class Projection:
    """Codes projected to 2-D: points (n, 2), and the share of variance each axis explains (or None)."""

    points: np.ndarray
    explained: tuple[float, float] | None


def project_2d(codes: np.ndarray) -> Projection:
    """The codes themselves if d = 2 (d = 1 padded with zeros), else their first two principal components."""
    d = codes.shape[1]
    if d <= 2:
        points = codes if d == 2 else np.concatenate([codes, np.zeros_like(codes)], axis=1)
        return Projection(points=points, explained=None)
    centred = codes - codes.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    share = variance / variance.sum()
    return Projection(points=centred @ vt[:2].T, explained=(float(share[0]), float(share[1])))


MANIFOLD_MASS = (0.05, 0.95)  # the manifold's grid runs from the prior's 5% to its 95% quantile on each axis
QUANTILE_DRAWS = 200_000  # draws of p(z) that estimate a prior's quantiles where it has no inverse CDF
QUANTILE_SEED = 0


@dataclass(frozen=True)
class Manifold:
    """The decoded manifold of a 2-D latent space.

    images: (steps * steps, C, H, W) decoder means, row-major, top row = highest z_2;
    coordinates: (steps, 2), the grid's z_1 values (column 0, left to right) and z_2 values
    (column 1, bottom to top), each the prior's marginal quantiles at evenly spaced probabilities;
    draws: None where those quantiles are exact (the prior's inverse CDF), else the number of
    draws of p(z) they were estimated from.
    """

    images: np.ndarray
    coordinates: np.ndarray
    draws: int | None


def prior_quantiles(model: Model, probabilities: torch.Tensor, device: torch.device | str = "cpu",
                    draws: int = QUANTILE_DRAWS, seed: int = QUANTILE_SEED) -> tuple[torch.Tensor, int | None]:
    """The quantiles of each code coordinate's marginal under the prior: ([len(probabilities), d], draws).

    Exact (draws None) where the family's `prior()` has coordinates with an inverse CDF (a diagonal
    Gaussian such as N(0, I)); otherwise (a mixture such as the VampPrior, a hierarchy) the
    empirical quantiles of `draws` codes from `model.sample_codes`, made with `seed` on `device`.
    """
    prior = model.prior() if hasattr(model, "prior") else None
    base = prior.base_dist if isinstance(prior, Independent) else prior
    try:
        if base is not None:
            return base.icdf(probabilities.to(device)[:, None].expand(-1, model.code_dim)), None
    except NotImplementedError:
        pass
    generator = torch.Generator(device=device).manual_seed(seed)
    z = model.sample_codes(draws, generator)
    return torch.quantile(z.double(), probabilities.to(z.device, torch.float64), dim=0).to(z.dtype), draws


@torch.no_grad()
def manifold(model: Model, steps: int = 15, label: int | None = None) -> Manifold:
    """Decoded means over a grid of z for a 2-D latent space (see `Manifold`). Each axis's cells sit
    at the prior's marginal quantiles from 5% to 95%, evenly spaced in probability, so every
    column (and every row) holds the same prior mass of its coordinate. A class-conditional
    model decodes every cell with `label` (class 0 if None)."""
    if model.code_dim != 2:
        raise ValueError("the manifold figure needs a 2-D latent space")
    model.eval()
    device = next(model.parameters()).device
    probabilities = torch.linspace(*MANIFOLD_MASS, steps)
    coordinates, draws = prior_quantiles(model, probabilities, device)
    coordinates = coordinates.to(device=device, dtype=torch.float32)
    z1, z2 = torch.meshgrid(coordinates[:, 0], coordinates[:, 1].flip(0), indexing="xy")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)
    y = None
    if label_classes(model):
        y = torch.full((z.shape[0],), 0 if label is None else label, dtype=torch.long, device=device)
    images = decoder_mean(model.decoder(z, y)).cpu().numpy()
    return Manifold(images=images, coordinates=coordinates.cpu().numpy(), draws=draws)


@torch.no_grad()
def style_transfer(model: Model, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Encode each image with its own label, decode the same z with every label: (n, classes, ...),
    each image in the shape the decoder gives it.

    Shows what z holds once y is given (slant, thickness, ...), for a class-conditional model.
    """
    classes = label_classes(model)
    if not classes:
        raise ValueError("style transfer needs a class-conditional model")
    model.eval()
    z = model.code(x, y)  # [n, d]
    z_all = z.repeat_interleave(classes, dim=0)
    y_all = torch.arange(classes, device=z.device).repeat(x.shape[0])
    images = decoder_mean(model.decoder(z_all, y_all)).cpu().numpy()
    return images.reshape(x.shape[0], classes, *images.shape[1:])


def pick_examples(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of `per_class` examples of every class present, in class order (a fixed random choice)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in np.unique(labels)]
    return np.concatenate(chosen)

