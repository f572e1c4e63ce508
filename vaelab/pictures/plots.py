"""The report's figures that are not image grids: curves, latent scatter, decoded manifold, the
classifier's accuracy and confusion. Drawing only: the numbers come from elsewhere. The image
grids (`grid_figure`, the PNG files) are `vaelab.pictures`', re-exported here for the report.

Every figure is a `matplotlib.figure.Figure` of its own, written through the Agg canvas: no
pyplot, no backend switch, nothing of the caller's matplotlib state changes.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .grids import image_stack, mosaic, show_canvas

CLASS_COLORS = matplotlib.colormaps["tab10"].colors  # one colour per class, in every figure
RUN_COLORS = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000", "#2e75b6")
NATS = "nats per image"


def curves_figure(rows: list[dict], bound_key: str, bound_name: str, parts: dict[str, str]):
    """The bound per epoch (training and validation), then one panel per part of the bound
    (`parts`: {name: words}, logged as valid_<name> and, by runs that log it, train_<name>): the
    reconstruction term, a KL per latent; validation solid, training dashed."""
    epochs = [row["epoch"] for row in rows]
    logged = {name: words for name, words in parts.items() if any(f"valid_{name}" in row for row in rows)}
    figure = Figure(figsize=(5 + 3.2 * len(logged), 3.8))
    panels = figure.subplots(1, 1 + len(logged), squeeze=False)[0]
    left = panels[0]
    left.plot(epochs, [row[bound_key] for row in rows], marker="o", ms=3, label=f"training {bound_name}")
    left.plot(epochs, [row["valid_elbo"] for row in rows], marker="s", ms=3, label="validation ELBO")
    left.set(xlabel="epoch", ylabel=f"bound ({NATS})", title="Lower bound per epoch (higher is better)")
    left.legend(frameon=False)
    for index, (axes, (name, words)) in enumerate(zip(panels[1:], logged.items())):
        shown = [(row["epoch"], row[f"valid_{name}"]) for row in rows if f"valid_{name}" in row]
        colour = RUN_COLORS[(index + 3) % len(RUN_COLORS)]
        axes.plot(*zip(*shown), marker="o", ms=3, color=colour, label="validation")
        trained = [(row["epoch"], row[f"train_{name}"]) for row in rows if f"train_{name}" in row]
        if trained:
            axes.plot(*zip(*trained), ls="--", color=colour, alpha=0.7, label="training")
            axes.legend(frameon=False, fontsize=7)
        axes.set(xlabel="epoch", ylabel=NATS)
        axes.set_title(f"{name}\n{words}", fontsize=8)
    for axes in panels:
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


def latent_units_figure(layers: dict, threshold: float):
    """One panel per latent of eval.json's "latents" (`layers`: {name: {"activity", "kl_units", ...}}):
    a bar per unit, sorted from the most used, its KL in nats where the family gives one per unit,
    dark where the unit is active (activity Cov_x(E_q[u | x]) above `threshold`), grey where not;
    and every unit's activity as a dot on a log scale on the right, the threshold dashed. Without KLs
    per unit the units are sorted by their activity, the dots alone."""
    figure = Figure(figsize=(max(5.0, 4.2 * len(layers)), 3.4))
    panels = figure.subplots(1, len(layers), squeeze=False)[0]
    for axes, (name, layer) in zip(panels, layers.items()):
        activity = np.asarray(layer["activity"])
        kl = np.asarray(layer["kl_units"]) if layer.get("kl_units") else None
        order = np.lexsort((-activity, -kl)) if kl is not None else np.argsort(-activity, kind="stable")
        units = np.arange(len(order))
        active = activity[order] > threshold
        if kl is not None:
            axes.bar(units, kl[order], width=0.85, color=[RUN_COLORS[0] if on else "#b4b4b4" for on in active])
            axes.set_ylabel(f"KL ({NATS})")
            spread = axes.twinx()
        else:
            spread = axes
            axes.set_yticks([])
        spread.scatter(units, np.clip(activity[order], 1e-6, None), s=9, zorder=3,
                       color=[RUN_COLORS[1] if on else "#8c8c8c" for on in active])
        spread.axhline(threshold, color=RUN_COLORS[1], ls="--", lw=0.8)
        spread.set_yscale("log")
        spread.set_ylabel("activity Cov_x(E_q[u | x]) (dots)", fontsize=8)
        axes.set_xlabel(f"unit of {name}, sorted")
        axes.set_title(f"{name}: {layer['active']} of {layer['units']} units active", fontsize=9)
        axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure
