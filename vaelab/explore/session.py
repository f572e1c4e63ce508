"""What the explorer computes, apart from HTTP: loaded runs, the sliders' units of z, and each interaction.

Every function takes and returns plain numbers (lists, numpy arrays); images come back as uint8
[H, W] (one channel) or [H, W, C] (round(255 * decoder mean)), so the page shows exactly what the
decoder gives: the page draws three channels as RGB colour and any other count channel by channel.
A drawn image is one grey channel, so only a one-channel run analyses a drawing (`can_draw`).
Nothing here writes: runs are read once at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import inference
from ..api import Run, load_run
from ..inference.latents import ACTIVE
from ..models import Classifies, class_conditional, decoder_mean

DIRECTIONS = 16  # sliders: the units of the code, from the most active (the test posteriors' means spread most)
DIRECTION_IMAGES = 2000  # test images whose posterior means give the directions
INTERPOLATION_STEPS = (2, 32)
POSTERIOR_SAMPLES = 50  # importance samples per class for the CVAE's p(y | x) of a drawn digit


@dataclass
class Explored:
    """One run as the explorer holds it: the run, and the directions of its sliders.

    mean [d], directions [k, d] (rows of the identity: unit `units[i]` of the code for slider i),
    scales [k]: the standard deviation of the test codes along each, so slider value s moves z by
    s * scale * direction; active [k]: whether the unit is active (that variance above
    `inference.latents.ACTIVE`, Burda et al.'s 0.01), the others greyed on the page.
    """

    name: str
    run: Run
    mean: np.ndarray
    directions: np.ndarray
    scales: np.ndarray
    units: np.ndarray
    active: np.ndarray
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def classes(self) -> list[str]:
        return list(self.run.class_names) if class_conditional(self.run.model) else []

    @property
    def can_draw(self) -> bool:
        """Whether the drawing pad (one grey channel) makes an image this run's model reads: C = 1."""
        return self.run.model.image_shape[0] == 1

    def describe(self) -> dict:
        model = self.run.model
        return {"name": self.name, "model": self.run.config.model, "latent_dim": model.code_dim,
                "image_shape": list(model.image_shape), "channels": model.image_shape[0],
                "drawing": self.can_draw, "classes": self.classes,
                "directions": len(self.scales), "units": self.units.tolist(), "active": self.active.tolist(),
                "test_images": int(self.test_x.shape[0]),
                "epoch": self.run.epoch}


def explore_runs(paths: "list[str | Path | Run]", device: str = "auto") -> list[Explored]:
    """Load each run (best checkpoint; a `Run` is taken as it is) and find its sliders' directions
    from the test set."""
    explored, names = [], set()
    for path in paths:
        run = path if isinstance(path, Run) else load_run(path, device=device)
        name = Path(run.path).resolve().name
        while name in names:
            name += "'"
        names.add(name)
        data = run.test_data()
        found = unit_directions(run, data.read[:DIRECTION_IMAGES], data.y[:DIRECTION_IMAGES])
        explored.append(Explored(name, run, *found, data.read, data.y))
    return explored


@torch.no_grad()
def unit_directions(run: Run, x: torch.Tensor, y: torch.Tensor):
    """The sliders of a run: the units of the codes of images x (`Model.code`, under their labels y),
    from the one whose codes spread most over the images (for one Gaussian layer that spread is the
    unit's activity Cov_x(E_q[u | x])): (mean [d], directions [k, d], standard deviations [k], units [k],
    active [k]), k = min(DIRECTIONS, d), d = code_dim."""
    labels = y if class_conditional(run.model) else None
    means = run.model.code(x, labels).double().cpu().numpy()
    variance = means.var(0, ddof=1) if means.shape[0] > 1 else np.zeros(means.shape[1])
    order = np.argsort(-variance, kind="stable")[: min(DIRECTIONS, means.shape[1])]
    return (means.mean(0), np.eye(means.shape[1])[order], np.sqrt(variance[order]), order,
            variance[order] > ACTIVE)


def to_pixels(means: torch.Tensor) -> np.ndarray:
    """Decoder means [n, C, H, W] in [0, 1] -> uint8 [n, H, W] (one channel) or [n, H, W, C]."""
    pixels = (means.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return pixels[:, 0] if pixels.shape[1] == 1 else pixels.transpose(0, 2, 3, 1)


@torch.no_grad()
def decode(explored: Explored, z: np.ndarray, label: int | None) -> np.ndarray:
    """Images [n, H, W(, C)] uint8 for codes z [n, d] under class `label` (None for a model without classes)."""
    run = explored.run
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=run.device)
    labels = None if label is None else torch.full((z.shape[0],), label, dtype=torch.long, device=run.device)
    return to_pixels(decoder_mean(run.model.decoder(z, labels)))


def slider_code(explored: Explored, values: list[float]) -> np.ndarray:
    """z [d] for slider values (standard deviations along each slider's unit)."""
    return explored.mean + (np.asarray(values) * explored.scales) @ explored.directions


def random_code(explored: Explored, seed: int) -> np.ndarray:
    """A code [d] from the prior (`Model.sample_codes`), drawn with `seed`."""
    generator = torch.Generator(device=explored.run.device).manual_seed(seed)
    return explored.run.model.sample_codes(1, generator)[0].double().cpu().numpy()


@torch.no_grad()
def interpolation_codes(explored: Explored, first: int, last: int, steps: int) -> np.ndarray:
    """Codes [steps, d] on the line between the codes of test images `first` and `last`
    (each encoded under its own label, for a model with classes)."""
    run = explored.run
    index = torch.tensor([first, last], device=run.device)
    labels = explored.test_y[index] if class_conditional(run.model) else None
    ends = run.model.code(explored.test_x[index], labels).double().cpu().numpy()
    weights = np.linspace(0, 1, steps)[:, None]
    return (1 - weights) * ends[0] + weights * ends[1]


@torch.no_grad()
def analyse(explored: Explored, image: np.ndarray, seed: int = 0) -> dict:
    """A drawn image [H, W] in [0, 1] (one grey channel: a run with `can_draw`): its class posterior,
    reconstruction, and style.

    posterior: q(y | x) for a family with a classifier (M2); for a class-conditional model without
    one, the Bayes rule p(y | x) ~ pi_y p(x | y), log p(x | y) by importance sampling with
    POSTERIOR_SAMPLES draws per class; none without classes. The reconstruction decodes the
    posterior mean under the most probable class, and `style` decodes that same z under every class.
    """
    run, model = explored.run, explored.run.model
    if not explored.can_draw:
        raise ValueError(f"run {explored.name} has {model.image_shape[0]}-channel images; a drawing has one")
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32, device=run.device)[None, None]
    if run.config.binarize != "none" and run.config.encoder_input != "grayscale":  # q read 0/1 pixels: so does a drawing
        x = (x >= 0.5).to(x.dtype)
    if not class_conditional(model):
        z = model.code(x, None)
        return {"posterior": [], "label": None, "z": z[0].tolist(), "reconstruction": to_pixels(
            decoder_mean(model.decoder(z, None)))[0]}
    if isinstance(model, Classifies):
        posterior = model.classifier(x).probs[0]
    else:
        generator = torch.Generator(device=run.device).manual_seed(seed)
        per_class = inference.log_likelihood_per_class(model, x, POSTERIOR_SAMPLES, generator)
        posterior = torch.softmax(per_class[0] + model.class_log_prior(), 0)
    label = int(posterior.argmax())
    z = model.code(x, torch.tensor([label], device=run.device))
    classes = torch.arange(model.num_classes, device=run.device)
    style = to_pixels(decoder_mean(model.decoder(z.expand(model.num_classes, -1), classes)))
    return {"posterior": posterior.tolist(), "label": label, "z": z[0].tolist(), "reconstruction": style[label],
            "style": style}
