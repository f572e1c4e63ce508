"""Splits and binarisation: train / validation / test from the raw arrays, pixels drawn with a fixed seed.

Train = the first 50,000 training images, validation = the last 10,000 (for MNIST this is the
classic split of `mnist.pkl.gz`), test = the 10,000 test images; a user's dataset holds out its
spec's `valid_size` instead. For semi-supervised training, `labelled_subset` picks the training
images whose labels are kept. Images keep their shape
(n, channels, height, width) throughout; flattening is the business of the networks that want it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .registry import DatasetSpec, get_spec
from .sources import RawData


BINARIZE_MODES = ("dynamic", "expected", "static", "none")
FIXED_BINARIZATION_SEED = 20141220  # validation/test (and static train) draws: same on every machine


@dataclass(frozen=True)
class Split:
    """Images (n, channels, height, width) uint8 and labels (n,) int64: intensities 0..255, or 0/1 draws if `binary`.

    gray: for binary images, the intensities 0..255 they were drawn from (n, channels, height,
    width) uint8, where kept (`make_splits`; what q reads with `--encoder-input grayscale`)."""

    images: np.ndarray
    labels: np.ndarray
    binary: bool = False
    gray: np.ndarray | None = None

    def float_images(self) -> np.ndarray:
        """(n, channels, height, width) float32 in [0, 1]: the 0/1 draws, or intensities / 255."""
        return self.images.astype(np.float32) if self.binary else self.images.astype(np.float32) / 255.0

    def gray_images(self) -> np.ndarray:
        """(n, channels, height, width) float32 in [0, 1]: the intensities / 255 (those binary draws
        were made from)."""
        return (self.gray if self.binary else self.images).astype(np.float32) / 255.0

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    """The three splits of one dataset, how they were binarised, and the dataset's spec."""

    train: Split
    valid: Split
    test: Split
    binarize: str
    spec: DatasetSpec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.image_shape


def binarize_fixed(images: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli(intensity / 255) draw per pixel with numpy's PCG64: uint8 of 0/1, `images`' shape.

    The uniforms fill the array in C order, so the draw depends on the number of pixels, not on the
    shape: (n, 1, height, width) gets exactly the pixels that vaelab 0.1 drew for (n, height * width).
    """
    uniform = np.random.Generator(np.random.PCG64(seed)).random(images.shape, dtype=np.float32)
    return (uniform * 255.0 < images).astype(np.uint8)


def make_splits(raw: RawData, binarize: str = "dynamic", train_on: str = "train", limit_train: int | None = None) -> Splits:
    """Train/validation/test splits; validation and test binarised once with a fixed seed.

    binarize: "dynamic" keeps train intensities (the trainer draws fresh pixels every epoch), so
    does "expected" (the trainer scores them as the mean over those draws), "static" binarises
    train once, "none" keeps every split in grayscale. A binarised split keeps the intensities it
    was drawn from (`Split.gray`).
    train_on: "train" (MNIST: 50,000) or "train+valid" (60,000; validation then overlaps training).
    """
    if binarize not in BINARIZE_MODES:
        raise DataError(f"unknown binarisation {binarize!r}; choose one of: {', '.join(BINARIZE_MODES)}")
    spec = get_spec(raw.dataset)
    n_train = len(raw.train_labels) - spec.valid_size
    train_x, train_y = raw.train_images, raw.train_labels.astype(np.int64)
    valid = Split(train_x[n_train:], train_y[n_train:])
    test = Split(raw.test_images, raw.test_labels.astype(np.int64))
    if train_on == "train":
        train = Split(train_x[:n_train], train_y[:n_train])
    elif train_on == "train+valid":
        train = Split(train_x, train_y)
    else:
        raise DataError(f"unknown {{train_on}} {train_on!r}; choose train or train+valid")
    if limit_train is not None:
        train = Split(train.images[:limit_train], train.labels[:limit_train])
    if binarize != "none":
        valid = Split(binarize_fixed(valid.images, FIXED_BINARIZATION_SEED + 1), valid.labels, True, valid.images)
        test = Split(binarize_fixed(test.images, FIXED_BINARIZATION_SEED + 2), test.labels, True, test.images)
    if binarize == "static":
        train = Split(binarize_fixed(train.images, FIXED_BINARIZATION_SEED), train.labels, True, train.images)
    return Splits(train=train, valid=valid, test=test, binarize=binarize, spec=spec)


def labelled_subset(labels: np.ndarray, count: int, num_classes: int, seed: int) -> np.ndarray:
    """Which `count` training images keep their labels: sorted int64 indices into `labels` [n].

    Balanced over the classes: each gets count // num_classes images, and count % num_classes
    classes (drawn with `seed`) get one more; within a class the images are drawn with `seed`.
    The same (labels, count, seed) always give the same images, on every machine (numpy's PCG64).
    """
    if count < num_classes:
        raise DataError(f"{{labels}} {count} is fewer than the {num_classes} classes: the semi-supervised model needs "
                        f"at least one labelled image per class; use {{labels}} {num_classes} or more")
    if count > len(labels):
        raise DataError(f"{{labels}} {count:,} is more than the {len(labels):,} training images; use at most "
                        f"{len(labels):,}")
    rng = np.random.Generator(np.random.PCG64(seed))
    per_class = np.full(num_classes, count // num_classes)
    per_class[rng.permutation(num_classes)[: count % num_classes]] += 1
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class[label]:
            raise DataError(f"{{labels}} {count} asks for {per_class[label]} labelled images of class {label}, but the "
                            f"training split holds only {len(members)}; use fewer {{labels}}")
        chosen.append(rng.permutation(members)[: per_class[label]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)
