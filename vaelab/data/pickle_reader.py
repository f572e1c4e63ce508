"""The restricted pickle reader: the classic `mnist.pkl.gz`, without letting a pickle run code.

The pickle holds ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)): float rows of
intensities k/256, one flat row per image, and int64 labels. The reader turns them into the
content of the standard IDX files, images (n, channels, height, width) uint8 in MNIST's spec shape.
"""

from __future__ import annotations

import gzip
import io
import pickle

import numpy as np

from ..errors import DataError
from .idx import read_limited, verify_arrays
from .registry import MNIST_PICKLE_SHA256, check_sha256, get_spec

MAX_PICKLE_BYTES = 256 * 1024 * 1024  # the MNIST pickle decompresses to about 220 MB


class RestrictedUnpickler(pickle.Unpickler):
    """Admits exactly the globals that a pickle of plain numpy arrays needs, and nothing else.

    Those are numpy's array reconstructor, ndarray and dtype, and `_codecs.encode` (a pure
    function Python 3 uses for bytes in protocol-2 pickles).
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            import _codecs

            return _codecs.encode
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return _numpy_reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def parse_mnist_pickle(gz_bytes: bytes, where: str) -> dict[str, np.ndarray]:
    """The four arrays from the bytes of a `mnist.pkl.gz`-style file, through the restricted unpickler.

    The pickle holds ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)) with intensities
    k/256 in flat rows; the result is uint8 k, images in MNIST's spec shape (n, channels, height,
    width), the validation images appended to the training images as in the IDX files. Raises DataError for
    anything else, including a pickle that names other globals.
    """
    image_shape = get_spec("mnist").image_shape
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(gz_bytes)) as unzipped:
            raw = read_limited(unzipped, MAX_PICKLE_BYTES, where)
        splits = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
        images = [np.asarray(x, dtype=np.float64) for x in (x_train, x_valid, x_test)]
        labels = [np.asarray(y) for y in (y_train, y_valid, y_test)]
        if any(x.ndim != 2 or x.shape[1] != np.prod(image_shape) for x in images) or any(
            y.shape != (x.shape[0],) for x, y in zip(images, labels)
        ):
            raise ValueError("arrays of the wrong shape")
    except DataError:
        raise
    except Exception as exc:  # untrusted bytes: every failure becomes one clear error
        raise DataError(f"{where}: not a valid MNIST pickle ({exc}); delete it and fetch it again") from None

    def to_bytes(intensities: np.ndarray) -> np.ndarray:
        flat = np.clip(np.rint(intensities * 256), 0, 255).astype(np.uint8)
        return flat.reshape(len(flat), *image_shape)  # rows are row-major images, as in the IDX files

    return {
        "train_images": to_bytes(np.concatenate(images[:2])),
        "train_labels": np.concatenate(labels[:2]).astype(np.uint8),
        "test_images": to_bytes(images[2]),
        "test_labels": labels[2].astype(np.uint8),
    }


def load_mnist_pickle_bytes(gz_bytes: bytes, where: str) -> dict[str, np.ndarray]:
    """The four MNIST arrays from the pinned `mnist.pkl.gz`: checksum first, then the restricted unpickler."""
    check_sha256(gz_bytes, MNIST_PICKLE_SHA256, where)
    arrays = parse_mnist_pickle(gz_bytes, where)
    verify_arrays(arrays, get_spec("mnist"), where)
    return arrays
