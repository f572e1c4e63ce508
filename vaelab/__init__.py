"""vaelab: train, evaluate and explore variational autoencoders on MNIST-family images.

The package, one folder (wing) per role, lowest layer first: each imports only from those above
it in this list (tests/test_layers.py reads the order from here).

    errors.py   the errors a user sees: one line that says what to do, and an exit code
    runtime/    how a command runs: atomic files, the device, processes, compilation, precision, CPU sharing
    data/       the datasets: find, verify, cache, split and binarise the images
    models/     the model interface and the families built from networks, priors, latents and likelihoods
    pictures/   every figure: image grids and plots (drawing only)
    config.py   the training settings, their limits and checks, TOML files
    inference/  bounds, importance sampling, AIS and BDMC, what every latent does, the test-set evaluation
    quality/    how good samples are: a judge of the dataset (a small classifier), the Fréchet distance
    runs/       the run directory: its files, its checkpoints, older directories brought up to date
    training/   the step, the epoch, the trainer that writes a run directory
    api.py      train, load_run and Run: a run in Python
    report/     the report: one HTML page and a PDF for one or more runs
    explore/    the explorer: a local web page to move through z
    cli/        the vaelab command
"""

from .api import Run, load_run, train
from .errors import VaelabError
from .models import CVAE, VAE, Family, Setting, build_model, register_family, register_network

__version__ = "0.1.0"
__all__ = ["CVAE", "VAE", "Family", "Run", "Setting", "VaelabError", "build_model", "load_run", "open_explorer",
           "register_family", "register_network", "train", "write_report", "__version__"]


def write_report(runs: list, html_path, pdf_path=None, title: str | None = None, device: str = "auto"):
    """The report of `runs` (`Run`s, as `train` and `load_run` give them, or run directories) as an
    HTML page at html_path (and a PDF): `vaelab report` from Python. Returns the report's content."""
    from .report import write_report as write

    return write(list(runs), html_path, pdf_path, title=title, device=device)


def open_explorer(runs: list, port: int = 8765, host: str = "127.0.0.1", device: str = "auto"):
    """The explorer of `runs` (`Run`s or run directories), served from a thread of this process:
    `vaelab explore` from Python (the explore extra). Returns an `Explorer`: its `url`, and `stop()`."""
    from .errors import VaelabError as Error

    try:
        from .explore.server import Explorer
        from .explore.session import explore_runs
    except ImportError:
        raise Error("the explorer needs the explore extra: pip install 'vaelab[explore]'") from None
    return Explorer(explore_runs(list(runs), device), host, port)
