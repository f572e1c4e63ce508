"""Pictures: sample grids and reconstructions as PNG files. I/O only; the numbers come from elsewhere."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .runs import atomic_write_bytes  # noqa: E402

IMAGE_SIDE = 28


def mosaic(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Tile (n, 784) images in [0, 1] into one (rows * 30 - 2, columns * 30 - 2) array, row-major."""
    n = images.shape[0]
    rows = -(-n // columns)
    step = IMAGE_SIDE + pad
    canvas = np.ones((rows * step - pad, columns * step - pad), dtype=np.float32)
    for index, image in enumerate(images.reshape(n, IMAGE_SIDE, IMAGE_SIDE)):
        r, c = divmod(index, columns)
        canvas[r * step : r * step + IMAGE_SIDE, c * step : c * step + IMAGE_SIDE] = image
    return canvas


def _save(figure, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_sample_grid(path: Path, images: np.ndarray, columns: int, row_classes: list[int] | None,
                     class_names: tuple[str, ...], title: str) -> None:
    """A grid of generated images; with `row_classes`, each row is labelled with its class name."""
    canvas = mosaic(images, columns)
    rows = -(-images.shape[0] // columns)
    figure, axes = plt.subplots(figsize=(0.45 * columns + 1.4, 0.45 * rows + 0.8))
    axes.imshow(1.0 - canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks([])
    step = IMAGE_SIDE + 2
    if row_classes is not None:
        axes.set_yticks([r * step + IMAGE_SIDE / 2 for r in range(rows)])
        axes.set_yticklabels([class_names[c] for c in row_classes], fontsize=10)
        axes.set_ylabel("class y")
    else:
        axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_title(title, fontsize=10)
    _save(figure, path)


def save_reconstructions(path: Path, originals: np.ndarray, reconstructions: np.ndarray, title: str) -> None:
    """Test images (top row of each pair) above their reconstructions (bottom row)."""
    columns = originals.shape[0]
    canvas = mosaic(np.concatenate([originals, reconstructions]), columns)
    figure, axes = plt.subplots(figsize=(0.45 * columns + 1.6, 1.8))
    axes.imshow(1.0 - canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks([])
    step = IMAGE_SIDE + 2
    axes.set_yticks([IMAGE_SIDE / 2, step + IMAGE_SIDE / 2])
    axes.set_yticklabels(["test image", "reconstruction"], fontsize=9)
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_title(title, fontsize=10)
    _save(figure, path)
