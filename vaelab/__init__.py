"""vaelab: train, evaluate and explore variational autoencoders on MNIST-family images."""

from .api import Run, load_run
from .errors import VaelabError
from .models import CVAE, VAE, build_model

__version__ = "0.1.0"
__all__ = ["CVAE", "VAE", "Run", "VaelabError", "build_model", "load_run", "__version__"]
