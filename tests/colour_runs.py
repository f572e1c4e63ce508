"""Helpers of the colour tests (`test_colour.py`, the explorer's browser test): a small colour dataset,
tiny runs trained on it, and the image canvas read back out of a saved figure's PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

SIZE = 12  # pixels per side
CLASSES = 3


def write_colour_npz(path: Path, n: int = 300, seed: int = 0) -> Path:
    """n uint8 images [n, 3, SIZE, SIZE] in CLASSES classes: random-but-structured, class c a bright
    square in colour channel c (red, green, blue) at a random place, on faint noise in every channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = rng.integers(0, 40, (n, 3, SIZE, SIZE)).astype(np.uint8)
    for image, label in zip(images, labels):
        top, left = rng.integers(0, SIZE - 5, size=2)
        image[label, top : top + 5, left : left + 5] = rng.integers(180, 256)
    np.savez(path, images=images, labels=labels, class_names=np.array(["red", "green", "blue"]))
    return path


def train_flags(dataset: Path, out: Path, *extra: str) -> list[str]:
    """`vaelab train` arguments for a tiny run on `dataset` (2 epochs of 240 images, seconds on a CPU)."""
    return ["train", "--dataset", str(dataset), "--out", str(out), "--epochs", "2", "--hidden", "32",
            "--latent-dim", "2", "--batch-size", "30", "--no-progress", "--compile", "off", *extra]


def canvas_in_png(png: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The image canvas of a saved grid figure, read back at its own resolution: uint8 `shape`
    ((rows, columns, 3)). The canvas is the block of the figure that is not white (a colour grid's
    padding is light grey); each of its pixels is read at the centre of where the figure drew it."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int64)
    drawn = (pixels < 250).any(-1)
    top, bottom = _longest_run(drawn.mean(1) > 0.5)  # a title's lines are short runs, apart from the canvas
    left, right = _longest_run(drawn[top:bottom].mean(0) > 0.5)
    height, width = shape[:2]
    at_rows = (top + (np.arange(height) + 0.5) * (bottom - top) / height).astype(int)
    at_columns = (left + (np.arange(width) + 0.5) * (right - left) / width).astype(int)
    return pixels[np.ix_(at_rows, at_columns)]


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True in a 1-D array of flags."""
    best, start = (0, 0), None
    for index, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            best = max(best, (start, index), key=lambda run: run[1] - run[0])
            start = None
    return best
