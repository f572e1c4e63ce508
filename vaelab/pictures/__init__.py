"""The pictures wing: every figure vaelab draws, with matplotlib. Drawing only: the numbers come
from elsewhere (the trainer, the report's analysis, the command line).

    grids.py  image grids (samples, reconstructions, any images) as figures and PNG files
    plots.py  curves per epoch, the latent scatter, the decoded manifold, accuracy and confusion

Every figure is a `matplotlib.figure.Figure` of its own, written through the Agg canvas: no
pyplot, no backend switch, nothing of the caller's matplotlib state changes.
"""

from .grids import (CHANNEL_GAP, CHANNEL_GAP_VALUE, COLOUR_PADDING, GREY_PADDING, grid_figure, image_stack, mosaic,
                    png_bytes, save_figure, save_reconstructions, save_sample_grid, show_canvas)
from .plots import (CLASS_COLORS, NATS, RUN_COLORS, accuracy_figure, comparison_curves_figure, confusion_figure,
                    curves_figure, latent_figure, latent_units_figure, manifold_figure)

__all__ = ["CHANNEL_GAP", "CHANNEL_GAP_VALUE", "CLASS_COLORS", "COLOUR_PADDING", "GREY_PADDING", "NATS", "RUN_COLORS",
           "accuracy_figure", "comparison_curves_figure", "confusion_figure", "curves_figure", "grid_figure",
           "image_stack", "latent_figure", "latent_units_figure", "manifold_figure", "mosaic", "png_bytes", "save_figure",
           "save_reconstructions", "save_sample_grid", "show_canvas"]
