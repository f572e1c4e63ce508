"""Pictures as matplotlib figures: image grids, curves, latent scatter, decoded manifold; and the two
PNG files written outside the report (the trainer's sample grids, `vaelab reconstruct`). Drawing
only: the numbers come from elsewhere."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..files import atomic_write_bytes  # noqa: E402

def image_stack(images: np.ndarray) -> np.ndarray:
    """Grey images as (n, H, W), from (n, H, W) or one-channel (n, 1, H, W) arrays."""
    images = np.asarray(images)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"can only draw grey images, not {images.shape[1]} channels")
        return images[:, 0]
    return images


def mosaic(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Tile n images in [0, 1] (see `image_stack`) into one (rows * (H + pad) - pad, columns * (W + pad) - pad)
    array, row-major."""
    stack = image_stack(images)
    n, height, width = stack.shape
    rows = -(-n // columns)
    canvas = np.zeros((rows * (height + pad) - pad, columns * (width + pad) - pad), dtype=np.float32)  # white once inverted
    for index, image in enumerate(stack):
        r, c = divmod(index, columns)
        top, left = r * (height + pad), c * (width + pad)
        canvas[top : top + height, left : left + width] = image
    return canvas


def save_figure(path: Path, figure) -> None:
    """Write a figure as a PNG file, atomically."""
    atomic_write_bytes(Path(path), png_bytes(figure))


def save_sample_grid(path: Path, images: np.ndarray, columns: int, row_classes: list[int] | None,
                     class_names: tuple[str, ...], title: str) -> None:
    """A grid of generated images; with `row_classes`, each row is labelled with its class name."""
    labels = [class_names[c] for c in row_classes] if row_classes is not None else None
    save_figure(path, grid_figure(images, columns, title, row_labels=labels))


def save_reconstructions(path: Path, originals: np.ndarray, reconstructions: np.ndarray, title: str) -> None:
    """Test images (top row) above their reconstructions (bottom row)."""
    save_figure(path, grid_figure(np.concatenate([originals, reconstructions]), originals.shape[0], title,
                                  row_labels=["test image", "reconstruction"], row_axis=""))


# ---------------------------------------------------------------------------------------------
# Report figures. Each returns a matplotlib Figure; `png_bytes` turns it into a PNG.
# ---------------------------------------------------------------------------------------------

CLASS_COLORS = plt.get_cmap("tab10").colors  # one colour per class, in every figure
RUN_COLORS = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000", "#2e75b6")
NATS = "nats per image"


def png_bytes(figure, dpi: int = 110) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def curves_figure(rows: list[dict], bound_key: str, bound_name: str):
    """The bound per epoch (training and validation) and the validation ELBO's two terms."""
    epochs = [row["epoch"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(epochs, [row[bound_key] for row in rows], marker="o", ms=3, label=f"training {bound_name}")
    left.plot(epochs, [row["valid_elbo"] for row in rows], marker="s", ms=3, label="validation ELBO")
    left.set(xlabel="epoch", ylabel=f"bound ({NATS})", title="Lower bound per epoch (higher is better)")
    left.legend(frameon=False)
    right.plot(epochs, [-row["valid_recon"] for row in rows], marker="o", ms=3, color="#7030a0",
               label="reconstruction, -E_q[log p(x|z)]")
    right.set(xlabel="epoch", ylabel=f"reconstruction ({NATS})", title="Validation ELBO's terms: ELBO = -recon. - KL")
    twin = right.twinx()
    twin.plot(epochs, [row["valid_kl"] for row in rows], marker="s", ms=3, color="#548235", label="KL(q || p)")
    twin.set_ylabel(f"KL ({NATS})")
    lines = right.get_lines() + twin.get_lines()
    right.legend(lines, [line.get_label() for line in lines], frameon=False, loc="center right")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


def comparison_curves_figure(named_rows: list[tuple[str, list[dict]]]):
    """Validation ELBO per epoch for several runs on one plot."""
    figure, axes = plt.subplots(figsize=(7, 3.8))
    for index, (name, rows) in enumerate(named_rows):
        axes.plot([row["epoch"] for row in rows], [row["valid_elbo"] for row in rows], marker="o", ms=3,
                  color=RUN_COLORS[index % len(RUN_COLORS)], label=name)
    axes.set(xlabel="epoch", ylabel=f"validation ELBO ({NATS})", title="Validation ELBO per epoch")
    axes.grid(alpha=0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(frameon=False)
    figure.tight_layout()
    return figure


def grid_figure(images: np.ndarray, columns: int, title: str, row_labels: list[str] | None = None,
                column_labels: list[str] | None = None, row_axis: str = "class y", column_axis: str | None = None):
    """A mosaic of images (see `image_stack`) with optional row and column labels."""
    pad = 2
    canvas = mosaic(images, columns, pad)
    _, height, width = image_stack(images).shape
    rows = -(-images.shape[0] // columns)
    figure, axes = plt.subplots(figsize=(0.42 * columns + 1.5, 0.42 * rows + 1.0))
    axes.imshow(1.0 - canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_yticks([r * (height + pad) + height / 2 for r in range(rows)] if row_labels else [])
    if row_labels:
        axes.set_yticklabels(row_labels, fontsize=9)
        axes.set_ylabel(row_axis)
    axes.set_xticks([c * (width + pad) + width / 2 for c in range(columns)] if column_labels else [])
    if column_labels:
        axes.set_xticklabels(column_labels, fontsize=9)
        axes.xaxis.tick_top()
        if column_axis:
            axes.set_xlabel(column_axis)
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_title(title, fontsize=10)
    return figure


def latent_figure(points: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str,
                  axis_names: tuple[str, str]):
    """Test codes in 2-D, one colour per class."""
    figure, axes = plt.subplots(figsize=(5.6, 4.8))
    for c in np.unique(labels):
        mask = labels == c
        axes.scatter(points[mask, 0], points[mask, 1], s=3, alpha=0.6, color=CLASS_COLORS[c % 10],
                     label=class_names[c], rasterized=True)
    axes.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    axes.legend(markerscale=4, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def manifold_figure(images: np.ndarray, coordinates: np.ndarray, title: str):
    """Decoded means over a grid of z = (z_1, z_2), axes in prior units."""
    steps = len(coordinates)
    canvas = mosaic(images, steps, pad=0)
    figure, axes = plt.subplots(figsize=(5.2, 5.2))
    low, high = coordinates[0], coordinates[-1]
    half = (high - low) / (steps - 1) / 2
    axes.imshow(1.0 - canvas, cmap="gray", vmin=0, vmax=1, extent=(low - half, high + half, low - half, high + half))
    axes.set(xlabel="z_1", ylabel="z_2", title=title)
    figure.tight_layout()
    return figure


def accuracy_figure(rows: list[dict]):
    """The validation accuracy of q(y | x) per epoch (a family with a classifier)."""
    figure, axes = plt.subplots(figsize=(6, 3.4))
    epochs = [row["epoch"] for row in rows if "valid_accuracy" in row]
    axes.plot(epochs, [100 * (1 - row["valid_accuracy"]) for row in rows if "valid_accuracy" in row],
              marker="o", ms=3, color="#c00000")
    axes.set(xlabel="epoch", ylabel="validation error (%)", title="Classification error of q(y | x) per epoch")
    axes.set_yscale("log")
    axes.grid(alpha=0.3, which="both")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


def confusion_figure(confusion: np.ndarray, class_names: tuple[str, ...], title: str):
    """A confusion matrix (rows: true class, columns: predicted), each cell its count, shaded by row share."""
    confusion = np.asarray(confusion)
    share = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = 0.45 * len(class_names) + 1.8
    figure, axes = plt.subplots(figsize=(size, size - 0.4))
    axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(confusion):
        if count:
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if share[row, column] > 0.5 else "black")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, fontsize=8)
    axes.set_yticks(ticks, class_names, fontsize=8)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.tight_layout()
    return figure
