"""Pictures as matplotlib figures: image grids, curves, latent scatter, decoded manifold; and the two
PNG files written outside the report (the trainer's sample grids, `vaelab reconstruct`). Drawing
only: the numbers come from elsewhere.

Images of any channel count are drawn (see `image_stack`): one channel as grey, inverted so that
ink is black on white; three channels in their true colours on a neutral grey padding; any other
count (2, 4, ...) as its channels side by side, each a grey image drawn as one-channel images are.

Every figure is a `matplotlib.figure.Figure` of its own, written through the Agg canvas by
`Figure.savefig`: no pyplot, no backend switch, nothing of the caller's matplotlib state changes
(a notebook's backend and figures stay as they were).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..files import atomic_write_bytes

GREY_PADDING = 0.0  # the background of grey images: white once inverted
COLOUR_PADDING = 0.8  # a light neutral grey between colour images: neither black nor white, nor sigmoid(0)
CHANNEL_GAP = 1  # pixels between the channels of an image drawn side by side ...
CHANNEL_GAP_VALUE = 0.5  # ... in mid grey, so that an image's channels read as one block between white padding


def image_stack(images: np.ndarray) -> np.ndarray:
    """Images as they are drawn, from (n, H, W) or (n, C, H, W) arrays in [0, 1]:

    - C = 1 (or no C): grey, (n, H, W);
    - C = 3: colour, (n, H, W, 3) with channels red, green, blue;
    - any other C: each image's channels side by side, left to right in channel order, with
      a mid-grey line of CHANNEL_GAP pixels between them: grey, (n, H, C * W + (C - 1) * CHANNEL_GAP).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        return images
    if images.ndim != 4:
        raise ValueError(f"images must be (n, H, W) or (n, C, H, W), not of shape {images.shape}")
    n, channels, height, width = images.shape
    if channels == 1:
        return images[:, 0]
    if channels == 3:
        return images.transpose(0, 2, 3, 1)
    strips = np.full((n, height, channels * (width + CHANNEL_GAP) - CHANNEL_GAP), CHANNEL_GAP_VALUE,
                     dtype=np.result_type(images.dtype, np.float32))
    for channel in range(channels):
        left = channel * (width + CHANNEL_GAP)
        strips[:, :, left : left + width] = images[:, channel]
    return strips


def mosaic(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Tile n images in [0, 1] (see `image_stack`) into one canvas, row-major: grey
    (rows * (H + pad) - pad, columns * (W + pad) - pad), or for colour images the same with a last
    axis of 3 (red, green, blue). Padding and missing cells hold the background: GREY_PADDING for
    grey images, COLOUR_PADDING for colour ones."""
    stack = image_stack(images)
    colour = stack.ndim == 4
    n, height, width = stack.shape[:3]
    rows = -(-n // columns)
    shape = (rows * (height + pad) - pad, columns * (width + pad) - pad) + ((3,) if colour else ())
    canvas = np.full(shape, COLOUR_PADDING if colour else GREY_PADDING, dtype=np.float32)
    for index, image in enumerate(stack):
        r, c = divmod(index, columns)
        top, left = r * (height + pad), c * (width + pad)
        canvas[top : top + height, left : left + width] = image
    return canvas


def show_canvas(axes, canvas: np.ndarray, **options) -> None:
    """Draw a `mosaic` on `axes`: grey inverted (ink black on white), colour as it is."""
    if canvas.ndim == 3:
        axes.imshow(np.clip(canvas, 0.0, 1.0), **options)
    else:
        axes.imshow(1.0 - canvas, cmap="gray", vmin=0, vmax=1, **options)


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

CLASS_COLORS = matplotlib.colormaps["tab10"].colors  # one colour per class, in every figure
RUN_COLORS = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000", "#2e75b6")
NATS = "nats per image"


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (the Agg canvas draws it; no pyplot is involved, so nothing to close)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def curves_figure(rows: list[dict], bound_key: str, bound_name: str):
    """The bound per epoch (training and validation) and the validation ELBO's two terms."""
    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(10, 3.8))
    left, right = figure.subplots(1, 2)
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
    figure = Figure(figsize=(7, 3.8))
    axes = figure.subplots()
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
    height, width = image_stack(images).shape[1:3]
    rows = -(-images.shape[0] // columns)
    aspect = width / height  # wider cells for channels side by side
    figure = Figure(figsize=(0.42 * columns * max(1.0, aspect) + 1.5, 0.42 * rows + 1.0))
    axes = figure.subplots()
    show_canvas(axes, canvas, interpolation="nearest")
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
    figure = Figure(figsize=(5.6, 4.8))
    axes = figure.subplots()
    for c in np.unique(labels):
        mask = labels == c
        axes.scatter(points[mask, 0], points[mask, 1], s=3, alpha=0.6, color=CLASS_COLORS[c % 10],
                     label=class_names[c], rasterized=True)
    axes.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    axes.legend(markerscale=4, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def manifold_figure(images: np.ndarray, coordinates: np.ndarray, title: str) -> Figure:
    """Decoded means over a grid of z = (z_1, z_2): images (steps * steps, ...) row-major with the
    top row at the highest z_2, coordinates (steps, 2) the grid's z_1 (column 0) and z_2 values
    (column 1), increasing (or (steps,) for both axes). The cells are evenly spaced on the page
    while their z need not be (quantiles), so the ticks sit at cell centres and read the cell's z."""
    steps = len(coordinates)
    coordinates = np.asarray(coordinates, dtype=np.float64)
    if coordinates.ndim == 1:
        coordinates = np.stack([coordinates, coordinates], axis=1)
    canvas = mosaic(images, steps, pad=0)
    height, width = image_stack(images).shape[1:3]
    figure = Figure(figsize=(min(12.0, 5.2 * max(1.0, width / height)), 5.2))  # channels side by side: wider
    axes = figure.subplots()
    show_canvas(axes, canvas)
    ticks = np.unique(np.linspace(0, steps - 1, min(steps, 5)).round().astype(int))
    axes.set_xticks([c * width + (width - 1) / 2 for c in ticks], [f"{coordinates[c, 0]:.2f}" for c in ticks])
    axes.set_yticks([r * height + (height - 1) / 2 for r in ticks],
                    [f"{coordinates[steps - 1 - r, 1]:.2f}" for r in ticks])
    axes.set(xlabel="z_1", ylabel="z_2", title=title)
    figure.tight_layout()
    return figure


def accuracy_figure(rows: list[dict]):
    """The validation accuracy of q(y | x) per epoch (a family with a classifier)."""
    figure = Figure(figsize=(6, 3.4))
    axes = figure.subplots()
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
    figure = Figure(figsize=(size, size - 0.4))
    axes = figure.subplots()
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
