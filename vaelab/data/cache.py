"""The cache: a dataset's four verified arrays in one uncompressed `.npz`, written once, checked on every read.

Format versions (the number is in the file name, `{dataset}-v{version}.npz`):
  v2 (written now): images (n, channels, height, width) uint8 in the dataset's spec shape;
  v1 (vaelab 0.1, still read, never written): images flat, (n, channels * height * width).
Labels are (n,) uint8 in both. Either way the arrays are checked against the dataset's pins by
re-encoding them as the IDX files, so a cache is never trusted, only used.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..runtime.files import atomic_write_bytes
from .idx import verify_arrays
from .registry import ARRAY_KEYS, DatasetSpec

CACHE_VERSION = 2
READABLE_VERSIONS = (2, 1)  # newest first: the order in which `load_raw` looks for a cache file


def default_cache_dir() -> Path:
    return Path(os.environ.get("VAELAB_CACHE") or Path.home() / ".cache" / "vaelab")


def cache_path(cache_dir: Path, dataset: str, version: int = CACHE_VERSION) -> Path:
    return Path(cache_dir) / f"{dataset}-v{version}.npz"


def _images_in_spec_shape(images: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Images as stored by any cache version, in the spec's (n, channels, height, width)."""
    if images.ndim == 2 and images.shape[1] == spec.pixels_per_image:  # v1: one flat row per image
        return images.reshape(len(images), *spec.image_shape)
    return images


def read_cache(path: Path, spec: DatasetSpec) -> dict[str, np.ndarray] | None:
    """The cached arrays (images in the spec's shape), verified; None (and the bad file renamed aside) if unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in ARRAY_KEYS}
        for key in ("train_images", "test_images"):
            arrays[key] = _images_in_spec_shape(arrays[key], spec)
        verify_arrays(arrays, spec, str(path))
        return arrays
    except (DataError, OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        try:  # derived data: rebuild it, keeping the bad copy for inspection
            path.replace(path.with_suffix(".corrupt"))
        except OSError:
            pass
        return None


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays atomically as an uncompressed .npz (fast to load, about 55 MB for MNIST)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
