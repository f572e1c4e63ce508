"""The sample grids saved during training: the same draws from p(z) at every epoch, so epochs compare."""

from __future__ import annotations

import numpy as np
import torch

from ..models import Model, class_conditional, decoder_mean

GRID_COLUMNS = 8  # samples per row


def grid_latents(model: Model, columns: int, seed: int) -> torch.Tensor:
    """The codes of a run's sample grid: [rows * columns, code_dim] from the prior (`Model.sample_codes`),
    rows = one per class for a class-conditional model (whose grid uses the first `columns` codes in
    every row), else `columns`.

    The same seed every epoch: under N(0, I) the very same codes, under a learned prior the same
    components and noise of the prior as it is now.
    """
    rows = model.num_classes if class_conditional(model) else columns
    device = next(model.parameters()).device
    model.eval()
    return model.sample_codes(rows * columns, torch.Generator(device=device).manual_seed(seed + 7919))


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
