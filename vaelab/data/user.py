"""Users' own images: `--dataset` given as an .npz file or as a folder of PNG images, one subfolder per class.

    .npz    `images` uint8 [N, H, W] or [N, C, H, W] (0..255), `labels` integers [N] in 0..K-1;
            optionally `class_names`, K strings (else "0".."K-1")
    folder  one subfolder per class, named for it (sorted by name: the first is class 0), holding
            .png images all of one size; all grayscale gives C = 1, any colour image C = 3 (RGB);
            transparency is flattened onto black (see `_read_folder` for every rule)

Every class from 0 to K-1 needs at least one image, and the data at least MIN_IMAGES. The images
are split once, by a fixed permutation, into test (the last tenth), validation (the tenth before)
and training (the rest), and binarised (or kept in grayscale) exactly as MNIST is. Anything
malformed is a DataError that names the file and what to fix; nothing is written.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from .spec import DatasetSpec

MIN_IMAGES = 20  # a tenth for validation and a tenth for test: at least two images each
MAX_SIDE = 1024  # pixels per side
MAX_CHANNELS = 4
SPLIT_SEED = 20250101  # the fixed permutation that splits a user's images
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}  # PIL's modes of grey PNGs
WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit grey PNGs: 0..65535


def is_user_dataset(dataset: str) -> bool:
    """Whether `dataset` names a user's .npz file or folder rather than a registered dataset."""
    return dataset.endswith(".npz") or os.sep in dataset or "/" in dataset or Path(dataset).is_dir()


def _fingerprint(path: Path) -> tuple:
    """What identifies the data's current state cheaply: paths, sizes and modification times."""
    if path.is_file():
        stat = path.stat()
        return (str(path), stat.st_size, stat.st_mtime_ns)
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.rglob("*")) if f.is_file())


def read_user_dataset(dataset: str) -> tuple[DatasetSpec, np.ndarray, np.ndarray]:
    """(spec, images [N, C, H, W] uint8, labels [N] int64) of a user's .npz file or PNG folder."""
    path = Path(dataset).expanduser()
    if not path.exists():
        raise DataError(f"{{dataset}} {dataset}: no such file or folder; give a registered name (mnist, "
                        "fashion-mnist), an .npz file or a folder of class subfolders")
    return _read(str(path.resolve()), _fingerprint(path.resolve()))


@lru_cache(maxsize=4)
def _read(resolved: str, fingerprint: tuple) -> tuple[DatasetSpec, np.ndarray, np.ndarray]:
    path = Path(resolved)
    if path.is_dir():
        images, labels, class_names, digest = _read_folder(path)
    elif path.suffix == ".npz":
        images, labels, class_names, digest = _read_npz(path)
    else:
        raise DataError(f"{{dataset}} {path}: not an .npz file or a folder")
    _check(path, images, labels, class_names)
    images.setflags(write=False)
    labels.setflags(write=False)
    spec = DatasetSpec(name=resolved, image_shape=tuple(int(s) for s in images.shape[1:]),
                       class_names=tuple(class_names), content_sha256={"data": digest}, mirrors=(),
                       valid_size=len(images) // 10)
    return spec, images, labels


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as exc:  # not a zip, a truncated file, an object array
        raise DataError(f"{path}: not a readable .npz of plain arrays ({exc}); save it with "
                        "numpy.savez(path, images=..., labels=...)") from None
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} array (it holds {', '.join(arrays) or 'nothing'}); "
                        "save it with numpy.savez(path, images=..., labels=...)")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images are {images.dtype}; give uint8 intensities 0..255 "
                        "(for floats in [0, 1]: (images * 255).round().astype(numpy.uint8))")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(f"{path}: images have shape {images.shape}; give [N, H, W] or [N, C, H, W]")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels are {labels.dtype} of shape {labels.shape}; give integers of shape [N]")
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels; give one label per image")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: label {labels.min()} is negative; labels are classes 0..K-1")
    classes = int(labels.max()) + 1 if len(labels) else 0
    names = [str(c) for c in range(classes)]
    if "class_names" in arrays:
        given = arrays["class_names"]
        if given.ndim != 1 or given.dtype.kind not in "U" or len(given) != classes:
            raise DataError(f"{path}: class_names must be {classes} strings, one per class 0..{classes - 1}")
        names = [str(name) for name in given]
    return (np.ascontiguousarray(images), labels.astype(np.int64), names,
            hashlib.sha256(path.read_bytes()).hexdigest())


def _read_folder(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """A folder of class subfolders of PNGs: (images [N, C, H, W] uint8, labels [N], class names, digest).

    Every image keeps its pixel values; the file's mode (as PIL reads it) decides its channels:
    - grey files (1-bit, 8-bit, 16-bit grey, with or without alpha) give one channel; 16-bit
      values 0..65535 become round(v / 257) in 0..255;
    - colour files (RGB, RGBA, palette) give three channels, red, green, blue; a palette image
      its palette's colours;
    - transparency (an alpha channel, or a palette's or tRNS's transparent entries) is flattened
      onto black, the background of vaelab's images: a pixel becomes round(value * alpha / 255);
    - a folder of grey files only gives C = 1; if any file is in colour, C = 3 for all, and a grey
      image's three channels are its grey values (R = G = B), so no image loses anything.
    """
    from PIL import Image, UnidentifiedImageError

    folders = sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not folders:
        raise DataError(f"{path}: no class subfolders; put the images of each class in a subfolder named for it")
    files, labels = [], []
    for label, folder in enumerate(folders):
        pngs = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".png")
        if not pngs:
            raise DataError(f"{folder}: no .png images; every class subfolder needs at least one")
        files += pngs
        labels += [label] * len(pngs)
    pictures, digest = [], hashlib.sha256()
    for file in files:
        content = file.read_bytes()
        digest.update(f"{file.relative_to(path).as_posix()}\0{len(content)}\0".encode())
        digest.update(content)
        try:
            with Image.open(file) as image:
                image.load()
                pictures.append(image.copy())
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{file}: not a readable PNG ({exc}); remove or replace it") from None
    size = pictures[0].size
    for file, picture in zip(files, pictures):
        if picture.size != size:
            raise DataError(f"{file} is {picture.size[0]}x{picture.size[1]} pixels but {files[0]} is "
                            f"{size[0]}x{size[1]}; give every image one size")
    colour = any(picture.mode not in GRAY_MODES for picture in pictures)
    images = np.stack([_pixels(picture, colour) for picture in pictures])
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), [f.name for f in folders], \
        digest.hexdigest()


def _pixels(picture, colour: bool) -> np.ndarray:
    """One PNG's pixels by `_read_folder`'s rules: uint8 [3, H, W] if `colour`, else [1, H, W]."""
    if picture.mode in WIDE_GRAY_MODES:  # PIL's conversions clip these to 255 instead of scaling them
        grey = np.round(np.asarray(picture, dtype=np.float64) / 257).clip(0, 255)[None]
        return np.repeat(grey, 3, axis=0).astype(np.uint8) if colour else grey.astype(np.uint8)
    rgba = np.asarray(picture.convert("RGBA"), dtype=np.float64)  # palettes expanded, transparency as alpha
    flat = np.round(rgba[..., :3] * rgba[..., 3:] / 255).astype(np.uint8).transpose(2, 0, 1)
    return flat if colour else flat[:1]  # a grey file's R = G = B


def _check(path: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> None:
    channels, height, width = images.shape[1:]
    if len(images) < MIN_IMAGES:
        raise DataError(f"{path}: {len(images)} images; give at least {MIN_IMAGES} (a tenth each is kept for "
                        "validation and test)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DataError(f"{path}: images have {channels} channels; give 1 to {MAX_CHANNELS}")
    if max(height, width) > MAX_SIDE:
        raise DataError(f"{path}: images are {height}x{width}; give at most {MAX_SIDE} pixels per side")
    counts = np.bincount(labels, minlength=len(class_names))
    if (counts == 0).any():
        empty = int(np.flatnonzero(counts == 0)[0])
        raise DataError(f"{path}: class {empty} ({class_names[empty]}) has no images; labels must use every "
                        f"class 0..{len(class_names) - 1}")


def user_arrays(dataset: str) -> dict[str, np.ndarray]:
    """A user's images as the four arrays every source gives: train (validation included, last) and test.

    A fixed permutation orders the N images; the last N // 10 are the test split, and the
    `valid_size` = N // 10 before them become the validation split (see `splits.make_splits`).
    """
    spec, images, labels = read_user_dataset(dataset)
    order = np.random.Generator(np.random.PCG64(SPLIT_SEED)).permutation(len(images))
    train, test = order[: len(order) - len(order) // 10], order[len(order) - len(order) // 10 :]
    return {"train_images": images[train], "train_labels": labels[train],
            "test_images": images[test], "test_labels": labels[test]}


def images_and_labels(data) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A user's data given in memory, as an .npz dataset holds it: (images uint8 [N, C, H, W],
    labels int64 [N], class names).

    data: images [N, C, H, W] or [N, H, W] (a numpy array or a torch tensor), uint8 intensities
    0..255 or floats in [0, 1] (stored as round(255 x), the 8 bits every vaelab dataset has); or a
    pair (images, labels) with labels [N] whole numbers 0..K-1 (None: one class, "images"); or a
    torch Dataset whose items are (image, label) pairs or images, each image [C, H, W] or [H, W].
    Anything else is a DataError that says what to give.
    """
    import torch

    if isinstance(data, torch.utils.data.Dataset):
        data = _dataset_arrays(data)
    images, labels = data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, None)
    images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if images.dtype.kind == "f":
        if not np.isfinite(images).all() or images.min(initial=0) < 0 or images.max(initial=0) > 1:
            raise DataError("{dataset}: float images must lie in [0, 1]; scale them, or give uint8 0..255")
        images = np.round(images.astype(np.float64) * 255).astype(np.uint8)
    elif images.dtype != np.uint8:
        raise DataError(f"{{dataset}}: images are {images.dtype}; give uint8 0..255 or floats in [0, 1]")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(f"{{dataset}}: images have shape {images.shape}; give [N, C, H, W] or [N, H, W] "
                        "(channels first)")
    if labels is None:
        labels, names = np.zeros(len(images), dtype=np.int64), ("images",)
    else:
        labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
            raise DataError(f"{{dataset}}: labels are {labels.dtype} of shape {labels.shape}; give {len(images)} "
                            "whole numbers, one class 0..K-1 per image")
        if len(labels) and labels.min() < 0:
            raise DataError("{dataset}: labels are classes 0..K-1; a label is negative")
        labels = labels.astype(np.int64)
        names = tuple(str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0))
    return np.ascontiguousarray(images), labels, names


def _dataset_arrays(dataset) -> tuple:
    """A torch Dataset's items stacked: (images, labels or None)."""
    import torch

    try:
        count = len(dataset)
    except TypeError:
        raise DataError("{dataset}: a torch Dataset must have a length (a map-style Dataset)") from None
    items = [dataset[index] for index in range(count)]
    if not items:
        raise DataError("{dataset}: the Dataset is empty")
    pairs = isinstance(items[0], (tuple, list))
    images = [torch.as_tensor(item[0] if pairs else item) for item in items]
    if len({tuple(image.shape) for image in images}) != 1:
        raise DataError("{dataset}: the Dataset's images differ in shape; give images of one size")
    labels = torch.as_tensor([int(item[1]) for item in items]) if pairs else None
    return torch.stack(images), labels


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> None:
    """An .npz dataset (`read_user_dataset`'s form) of these arrays, written atomically."""
    import io

    from ..runtime.files import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels, class_names=np.asarray(class_names, dtype=str))
    atomic_write_bytes(Path(path), buffer.getvalue())
