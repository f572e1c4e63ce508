"""What a dataset is: `DatasetSpec`, the facts every other part of vaelab takes from it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's images are, what its files must be, and where they may come from.

    image_shape: (channels, height, width) of one image, the shape images keep from the files to
    the networks. content_sha256: IDX name -> SHA-256 of the *decompressed* IDX file (a user's
    dataset: "data" -> SHA-256 of its file or files). valid_size: the training images held out
    for validation (the last ones).
    """

    name: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    content_sha256: dict[str, str]
    mirrors: tuple[str, ...]
    valid_size: int = 10_000

    def __post_init__(self):
        shape = tuple(self.image_shape)
        if len(shape) != 3 or not all(isinstance(size, int) and size >= 1 for size in shape):
            raise ValueError(f"{self.name}: image_shape must be three positive ints (channels, height, width), not {self.image_shape!r}")
        if not self.class_names:
            raise ValueError(f"{self.name}: a dataset needs at least one class name")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def pixels_per_image(self) -> int:
        """channels * height * width: the length of one image flattened (for an MLP's first layer)."""
        return math.prod(self.image_shape)
