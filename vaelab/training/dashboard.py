"""TensorBoard event files of a run (`--tensorboard`): the metrics of every epoch and the sample grids.

Written by process 0 after each epoch, to DIR/tensorboard/, through torch.utils.tensorboard; the
`tensorboard` package is an optional extra (`pip install 'vaelab[tensorboard]'`, which `make install`
installs). Open them with: tensorboard --logdir DIR/tensorboard
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VaelabError

# metrics.jsonl key -> TensorBoard tag: bounds together, then speed and schedules; every other
# train_<part> and valid_<part> key (the parts a family's bound declares) goes under terms/ (`tag`)
TAGS = {
    "train_elbo": "bound/train_elbo",
    "train_iw_bound": "bound/train_iw_bound",
    "valid_elbo": "bound/valid_elbo",
    "valid_accuracy": "classifier/valid_accuracy",
    "samples_per_second": "speed/images_per_second",
    "seconds": "speed/seconds_per_epoch",
    "lr": "schedule/learning_rate",
    "kl_weight": "schedule/kl_weight",
}
GRID_TAG = "samples"


def tag(key: str) -> str | None:
    """The TensorBoard tag of a metrics.jsonl key: TAGS's, terms/train_<part> or terms/valid_<part> for
    a bound's part, or None."""
    if key in TAGS:
        return TAGS[key]
    return f"terms/{key}" if key.startswith(("train_", "valid_")) else None


def summary_writer_class():
    """torch's SummaryWriter, or a VaelabError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise VaelabError("{tensorboard} needs the tensorboard package: pip install 'vaelab[tensorboard]' "
                          "(make install installs it)") from None
    return SummaryWriter


class Dashboard:
    """The event files of one run directory. first_epoch: the epoch training goes on from; events
    logged at it or later by an interrupted call are dropped (they were not checkpointed)."""

    def __init__(self, folder: Path, first_epoch: int):
        self.writer = summary_writer_class()(str(folder), purge_step=first_epoch)

    def epoch(self, row: dict, grid: Path | None = None, active: dict[str, int] | None = None) -> None:
        """One metrics.jsonl row as scalars at step = its epoch (the KL of every latent among its
        terms/valid_ ones), the epoch's sample grid (a PNG) if any, and every latent's active units on
        the validation images (`inference.active_units`) as latents/active_<name>."""
        epoch = row["epoch"]
        for key, value in row.items():
            if tag(key) is not None:
                self.writer.add_scalar(tag(key), value, epoch)
        for name, count in (active or {}).items():
            self.writer.add_scalar(f"latents/active_{name}", count, epoch)
        if grid is not None and grid.is_file():
            from PIL import Image

            with Image.open(grid) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(GRID_TAG, pixels, epoch, dataformats="HWC")
        self.writer.flush()

    def __enter__(self) -> "Dashboard":
        return self

    def __exit__(self, *exc_info) -> None:
        self.writer.close()
