"""Image grids as matplotlib figures and PNG files: what the trainer's sample grids, `vaelab sample`,
`vaelab reconstruct` and the report's image figures are drawn with. Drawing only: the numbers come
from elsewhere.

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

import numpy as np
from matplotlib.figure import Figure

from ..runtime.files import atomic_write_bytes

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


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (the Agg canvas draws it; no pyplot is involved, so nothing to close)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


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
