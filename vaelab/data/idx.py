"""The IDX reader: the standard files' bytes to arrays and back, checked against a dataset's pins.

An IDX image file holds (n, height, width) unsigned bytes: one channel. Images leave this module
as (n, channels, height, width) with the shape taken from the `DatasetSpec`, labels as (n,).
Because `encode_idx` turns such arrays back into the exact file bytes, arrays from any source
(IDX, the MNIST pickle, the cache) are held to the same SHA-256 pins (`verify_arrays`).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import ARRAY_KEYS, IDX_NAMES, DatasetSpec, check_sha256

MAX_IDX_BYTES = 48 * 1024 * 1024  # largest IDX file is 47,040,016 bytes


def parse_idx(content: bytes, what: str) -> np.ndarray:
    """Parse the bytes of an IDX file (uint8 data) into its array, (n,) or (n, height, width), or raise DataError."""
    if len(content) < 4:
        raise DataError(f"{what}: too short to be an IDX file ({len(content)} bytes); delete it and fetch it again")
    zero, dtype_code, ndim = struct.unpack(">HBB", content[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{what}: not an unsigned-byte IDX file (bad magic number); delete it and fetch it again")
    header_len = 4 + 4 * ndim
    if len(content) < header_len:
        raise DataError(f"{what}: truncated IDX header; delete it and fetch it again")
    shape = struct.unpack(f">{ndim}I", content[4:header_len])
    expected = header_len + int(np.prod(shape, dtype=np.int64))
    if len(content) != expected:
        raise DataError(
            f"{what}: holds {len(content)} bytes but its header promises {expected} (truncated or corrupt);"
            " delete it and fetch it again"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_len).reshape(shape)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array: labels (n,), or one-channel images (n, 1, height, width) or (n, height, width)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 1:
        return struct.pack(">HBBI", 0, 0x08, 1, array.shape[0]) + array.tobytes()
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"IDX image files hold one channel: cannot encode an array of shape {array.shape}")
    return struct.pack(">HBBIII", 0, 0x08, 3, *array.shape) + array.tobytes()


def images_in_spec_shape(images: np.ndarray, spec: DatasetSpec, what: str) -> np.ndarray:
    """(n, height, width) images from an IDX file as (n, channels, height, width); DataError if they do not fit the spec."""
    channels, height, width = spec.image_shape
    if images.ndim != 3 or channels != 1 or images.shape[1:] != (height, width):
        raise DataError(
            f"{what}: images of shape {images.shape[1:]}, but {spec.name} images are {spec.image_shape}"
            " (channels, height, width); delete it and fetch it again"
        )
    return images[:, np.newaxis]


def read_limited(stream, limit: int, what: str) -> bytes:
    """At most `limit` bytes from a stream; DataError if it holds more (no valid file is that large)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{what}: larger than any valid file ({limit} bytes); delete it and fetch it again")
    return data


def read_idx_file(path: Path) -> bytes:
    """The decompressed content of an IDX file, `.gz` or plain; DataError if unreadable or truncated."""
    try:
        with open(path, "rb") as raw:
            if raw.read(2) == b"\x1f\x8b":
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw) as unzipped:
                    return read_limited(unzipped, MAX_IDX_BYTES, str(path))
            raw.seek(0)
            return read_limited(raw, MAX_IDX_BYTES, str(path))
    except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt: delete it and fetch it again") from None


def arrays_from_idx_contents(contents: dict[str, bytes], spec: DatasetSpec, where: str) -> dict[str, np.ndarray]:
    """Check four decompressed IDX files against the pins and parse them into the four arrays.

    Images come out as (n, channels, height, width) uint8, labels as (n,) uint8.
    """
    arrays = {}
    for key, name in zip(ARRAY_KEYS, IDX_NAMES):
        check_sha256(contents[name], spec.content_sha256[name], f"{where}/{name}")
        array = parse_idx(contents[name], f"{where}/{name}")
        arrays[key] = images_in_spec_shape(array, spec, f"{where}/{name}") if key.endswith("images") else array
    return arrays


def verify_arrays(arrays: dict[str, np.ndarray], spec: DatasetSpec, where: str) -> None:
    """Check four arrays against the dataset's shape and pins by re-encoding them as IDX bytes (about 0.1 s)."""
    for key, name in zip(ARRAY_KEYS, IDX_NAMES):
        array = arrays.get(key)
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
            raise DataError(f"{where}: {key} is missing or not uint8; delete it and fetch the data again")
        item_shape = spec.image_shape if key.endswith("images") else ()
        if array.ndim != 1 + len(item_shape) or array.shape[1:] != item_shape:
            expected = "(n, " + ", ".join(map(str, item_shape)) + ")" if item_shape else "(n,)"
            raise DataError(f"{where}: {key} has shape {array.shape}, not {expected}; delete it and fetch the data again")
        check_sha256(encode_idx(array), spec.content_sha256[name], f"{where}:{key}")


def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name, folder / name.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    return None


def load_idx_folder(folder: Path, spec: DatasetSpec) -> dict[str, np.ndarray] | None:
    """The four arrays from a folder of IDX files, None if the folder lacks them, DataError if they are bad."""
    paths = {name: _find_idx(folder, name) for name in IDX_NAMES}
    if all(path is None for path in paths.values()):
        return None
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise DataError(f"{folder}: has some {spec.name} IDX files but not {', '.join(missing)}; add them or remove the others")
    contents = {name: read_idx_file(path) for name, path in paths.items()}
    return arrays_from_idx_contents(contents, spec, str(folder))
