"""vaelab: train, evaluate and explore variational autoencoders on MNIST-family images.

The package, one folder (wing) per role, lowest layer first: each imports only from those above
it in this list (tests/test_layers.py reads the order from here).

    errors.py   the errors a user sees: one line that says what to do, and an exit code
    runtime/    how a command runs: atomic files, the device, processes, compilation, precision, CPU sharing
    data/       the datasets: find, verify, cache, split and binarise the images
    models/     the model interface and the families built from networks, priors, latents and likelihoods
    pictures/   every figure: image grids and plots (drawing only)
    config.py   the training settings, their limits and checks, TOML files
    inference/  bounds, importance sampling, AIS and BDMC, the test-set evaluation
    runs/       the run directory: its files, its checkpoints, older directories brought up to date
    training/   the step, the epoch, the trainer that writes a run directory
    api.py      load_run and Run: a trained run in Python
    report/     the report: one HTML page and a PDF for one or more runs
    explore/    the explorer: a local web page to move through z
    cli/        the vaelab command
"""

from .api import Run, load_run
from .errors import VaelabError
from .models import CVAE, VAE, build_model

__version__ = "0.1.0"
__all__ = ["CVAE", "VAE", "Run", "VaelabError", "build_model", "load_run", "__version__"]
