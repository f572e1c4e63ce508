"""Shared fixtures: the real MNIST (fetched once into the vaelab cache) and a small trained model."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Runs that are compared with each other (a resumed run with an uninterrupted one, N processes with one)
# must use the same thread count: vaelab's CPU sharing would set it by how busy the machine is, and some
# models' sums then differ in their last bits. The tests of the sharing itself clear this variable.
os.environ["VAELAB_THREADS"] = "off"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (a subprocess it starts sets its own, by OMP_NUM_THREADS):
    runs compared bit for bit then repeat, and the module shares the machine without torch's thread
    team waiting on a busy core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_raw():
    """The real MNIST arrays from the cache (or fetched into it on first use)."""
    from vaelab.data import load_raw

    return load_raw("mnist")


SMALL = dict(model="cvae", latent_dim=8, hidden=(128,), limit_train=3000, batch_size=100, sample_epochs=(1,))


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mnist_raw):
    """A small CVAE trained for 4 epochs on 3,000 real MNIST images (a few seconds on 2 cores)."""
    from vaelab.config import make_config
    from vaelab.training import train

    out = tmp_path_factory.mktemp("runs") / "small"
    train(make_config(dict(SMALL, epochs=4)), out, log=lambda _: None, progress=False)
    return out


@pytest.fixture(scope="session")
def mnist_slice(tmp_path_factory, mnist_raw):
    """MNIST_SLICE real MNIST images (the first training and test images) as a user's .npz dataset:
    vaelab splits it into 2,400 training, 300 validation and 300 test images."""
    import numpy as np

    from .steps import MNIST_SLICE

    path = tmp_path_factory.mktemp("data") / "mnist-slice.npz"
    train, test = MNIST_SLICE * 4 // 5, MNIST_SLICE // 5
    images = np.concatenate([mnist_raw.train_images[:train], mnist_raw.test_images[:test]])
    labels = np.concatenate([mnist_raw.train_labels[:train], mnist_raw.test_labels[:test]]).astype(np.int64)
    np.savez(path, images=images, labels=labels)
    return path
