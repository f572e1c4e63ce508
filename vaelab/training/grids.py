"""The sample grids saved during training: the same latent codes at every epoch, so epochs compare."""

from __future__ import annotations

import numpy as np
import torch

from ..models import Model, class_conditional, decoder_mean

GRID_COLUMNS = 8  # samples per row


def fixed_latents(model: Model, columns: int, seed: int) -> torch.Tensor:
    """The z of every sample grid of a run, drawn once from N(0, I): [rows * columns, d], rows = one per
    class for a class-conditional model (whose grid uses the first `columns` codes in every row), else `columns`."""
    rows = model.num_classes if class_conditional(model) else columns
    generator = torch.Generator().manual_seed(seed + 7919)
    return torch.randn(rows * columns, model.latent_dim, generator=generator)


@torch.no_grad()
def grid_means(model: Model, z: torch.Tensor, columns: int) -> tuple[np.ndarray, list[int] | None]:
    """Decoder means for the fixed z: (rows * columns, C, H, W) in [0, 1], and the class of each row
    (one row per class, the same `columns` codes in every row so a column shows one style), or None."""
    model.eval()
    device = next(model.parameters()).device
    z = z.to(device)
    if class_conditional(model):
        rows = list(range(model.num_classes))
        y = torch.arange(model.num_classes, device=device).repeat_interleave(columns)
        return decoder_mean(model.decoder(z[:columns].repeat(model.num_classes, 1), y)).cpu().numpy(), rows
    return decoder_mean(model.decoder(z)).cpu().numpy(), None
