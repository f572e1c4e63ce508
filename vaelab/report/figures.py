"""The figures of one run, as PNG bytes with their captions: curves, the trainer's sample grids,
fresh samples, reconstructions, the latent space, the decoded manifold (d = 2), for a
class-conditional model style transfer, and for a model with a classifier q(y | x) its accuracy per
epoch and confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import inference, pictures
from ..api import Run
from ..models import Classifies
from ..runs import RunDir, read_json
from . import analysis

LATENT_POINTS = 5000  # test images in the latent-space figure
EPOCH_SAMPLES = "samples_epoch_"  # name prefix of the sample grids saved during training


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "curves"
    caption: str
    png: bytes

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, read from the PNG header."""
        return int.from_bytes(self.png[16:20], "big"), int.from_bytes(self.png[20:24], "big")


def run_figures(run: Run, seed: int = 0) -> list[Figure]:
    """Every figure of one run, the curves first, then the saved sample grids in epoch order."""
    classes = analysis.label_classes(run.model)
    figures = [curves(run)] + saved_samples(run) + [fresh_samples(run, seed)]
    test = run.test_data()
    test_labels = test.y.cpu().numpy()
    figures.append(reconstructions(run, test, test_labels, seed))
    figures.append(latent_space(run, test, test_labels, seed))
    if run.model.code_dim == 2:
        figures += manifolds(run)
    if classes:
        figures.append(style_transfer(run, test, test_labels, seed + 1))
    if isinstance(run.model, Classifies):
        figures += classifier_figures(run, test)
    evaluated = RunDir(run.path).eval
    if evaluated.is_file():
        figures += latent_units(read_json(evaluated).get("latents"))
    return figures


def latent_units(found: dict | None) -> list[Figure]:
    """The units of every latent from eval.json's "latents" (none before `vaelab evaluate`)."""
    if not found or not found.get("layers"):
        return []
    figure = pictures.latent_units_figure(found["layers"], found["threshold"])
    return [Figure("latent-units", "What every latent does: a bar per unit, sorted, its KL in nats per image where "
                   "the family has one per unit, dark where the unit is active; and every unit's activity "
                   f"Cov_x(E_q[u | x]) as a dot (log scale, right), active above the dashed {found['threshold']} "
                   "(Burda et al. 2015). An active unit with no KL of its own follows the latents it depends on.",
                   pictures.png_bytes(figure))]


def classifier_figures(run: Run, test) -> list[Figure]:
    """The validation error of q(y | x) per epoch, and its confusion matrix on the test set."""
    run.model.eval()
    confusion = inference.confusion_matrix(run.model, test.read, test.y).cpu().numpy()
    accuracy = np.trace(confusion) / confusion.sum()
    labels = f" from {run.config.labels} labelled images" if run.config.labels else ""
    return [
        Figure("accuracy", f"Validation error of the classifier q(y | x) per epoch{labels}.",
               pictures.png_bytes(pictures.accuracy_figure(run.metrics))),
        Figure("confusion", f"Test images by true class (rows) and the class q(y | x) names (columns): "
               f"{100 * accuracy:.2f}% right.",
               pictures.png_bytes(pictures.confusion_figure(confusion, run.class_names, "Confusion matrix of q(y | x)"))),
    ]


def curves(run: Run) -> Figure:
    figure = pictures.curves_figure(run.metrics, run.config.bound_key, run.config.bound_name, run.model.part_words())
    return Figure("curves", "The bound per epoch (left) and each part of the validation ELBO (right: its "
                  "reconstruction term and a KL term per latent), in nats per image.", pictures.png_bytes(figure))


def saved_samples(run: Run) -> list[Figure]:
    """The sample grids the trainer wrote to samples/epoch_NNN.png, in epoch order."""
    figures = []
    words = run.model.pixel_words
    for grid in sorted(RunDir(run.path).samples.glob("epoch_*.png")):
        epoch = int(grid.stem.split("_")[1])
        figures.append(Figure(f"{EPOCH_SAMPLES}{epoch:03d}", f"Samples after epoch {epoch} ({words}), drawn from "
                              "p(z) with the same seed at every epoch.", grid.read_bytes()))
    return figures


def fresh_samples(run: Run, seed: int) -> Figure:
    model_name, words = run.config.model.upper(), run.model.pixel_words
    images, labels = run.sample(n=64, per_class=8, seed=seed)
    if labels is not None:
        figure = pictures.grid_figure(images, 8, f"{model_name} samples, one row per class ({words})",
                                   row_labels=[run.class_names[c] for c in labels[::8]])
    else:
        figure = pictures.grid_figure(images, 8, f"{model_name} random samples ({words})")
    return Figure("samples", f"Fresh samples: codes z drawn from the prior, shown as the {words} of p(x | z), "
                  "not as draws of x.", pictures.png_bytes(figure))


def reconstructions(run: Run, test, test_labels: np.ndarray, seed: int) -> Figure:
    """One test image of each class (as q reads it) over the mean of p(x | its code)."""
    pick = analysis.pick_examples(test_labels, 1, seed=seed)
    x = test.read[pick].cpu().numpy()
    y = test.y[pick].cpu().numpy() if analysis.label_classes(run.model) else None
    both = np.concatenate([x, run.reconstruct(x, y)])
    figure = pictures.grid_figure(both, len(pick), f"{run.config.model.upper()} reconstructions",
                               row_labels=["test image", "reconstruction"], row_axis="")
    seen = " (their gray levels, which q reads)" if test.seen is not None else ""
    return Figure("reconstructions", f"Test images{seen} (top) and the {run.model.pixel_words} of "
                  f"p(x | z = {run.model.code_words}) (bottom).", pictures.png_bytes(figure))


def latent_space(run: Run, test, test_labels: np.ndarray, seed: int) -> Figure:
    """Posterior means of up to LATENT_POINTS test images in 2-D, coloured by class."""
    conditional = bool(analysis.label_classes(run.model))
    subset = np.random.default_rng(seed).choice(len(test_labels), size=min(LATENT_POINTS, len(test_labels)),
                                                replace=False)
    codes = analysis.latent_means(run.model, test.read[subset], test.y[subset] if conditional else None)
    projection = analysis.project_2d(codes)
    if projection.explained is None:
        axis_names, how = ("z_1", "z_2"), "the codes themselves (d = 2)"
    else:
        axis_names = (f"PC 1 ({100 * projection.explained[0]:.0f}% of variance)",
                      f"PC 2 ({100 * projection.explained[1]:.0f}% of variance)")
        how = f"the first two principal components of the codes (d = {run.model.code_dim})"
    given = " given y" if conditional else ""
    why = (" The label y carries the class, so z is free to hold only the style: the classes may well overlap."
           if conditional else "")
    figure = pictures.latent_figure(projection.points, test_labels[subset], run.class_names, f"Test codes {run.model.code_words}{given}",
                                 axis_names)
    return Figure("latent", f"{len(subset)} test images in latent space{given}: {how}, coloured by class.{why}",
                  pictures.png_bytes(figure))


def manifolds(run: Run) -> list[Figure]:
    """The decoded manifold of a 2-D latent space; one per class for a class-conditional model."""
    classes = analysis.label_classes(run.model)
    words = run.model.pixel_words
    if not classes:
        grid = analysis.manifold(run.model, steps=15)
        figure = pictures.manifold_figure(grid.images, grid.coordinates, "Decoded manifold over z")
        return [Figure("manifold", f"The decoded manifold: {words} of p(x | z) over a grid of z at "
                       f"{_quantile_words(grid)}.", pictures.png_bytes(figure))]
    figures = []
    for label in range(classes):
        name = run.class_names[label]
        grid = analysis.manifold(run.model, steps=10, label=label)
        figures.append(Figure(f"manifold_class_{label}", f"Decoded manifold for class {name}: {words} of "
                              f"p(x | z, y = {name}) over a grid of z at {_quantile_words(grid)}.",
                              pictures.png_bytes(pictures.manifold_figure(grid.images, grid.coordinates, f"class {name}"))))
    return figures


def _quantile_words(grid: analysis.Manifold) -> str:
    low, high = (round(100 * p) for p in analysis.MANIFOLD_MASS)
    how = "" if grid.draws is None else f", estimated from {grid.draws:,} draws of p(z)"
    return f"the {low}%-{high}% quantiles of each coordinate under the prior p(z){how}"


def style_transfer(run: Run, test, test_labels: np.ndarray, seed: int) -> Figure:
    """A test image of each class, encoded with its own label and decoded with every label."""
    classes = analysis.label_classes(run.model)
    pick = analysis.pick_examples(test_labels, 1, seed=seed)
    x = test.read[pick]
    transfer = analysis.style_transfer(run.model, x, test.y[pick])
    inputs = x.cpu().numpy()
    images = np.concatenate([np.concatenate([inputs[i : i + 1], transfer[i]]) for i in range(len(pick))])
    figure = pictures.grid_figure(images, classes + 1, "Style transfer: z from the test image, decoded with every label",
                               row_labels=[f"test {run.class_names[c]}" for c in test_labels[pick]],
                               column_labels=["input"] + list(run.class_names), row_axis="",
                               column_axis="decoded with label y")
    return Figure("style_transfer", "Each test image (left) is encoded with its own label; the same z is decoded with "
                  f"every label ({run.model.pixel_words}). What stays the same along a row is what z "
                  "holds once y is given (for digits: slant, thickness, size).", pictures.png_bytes(figure))
