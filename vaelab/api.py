"""The notebook API: load a run directory, then sample, encode, decode, reconstruct and evaluate.

    >>> import vaelab
    >>> run = vaelab.load_run("runs/cvae-mnist")
    >>> images, labels = run.sample(per_class=4, seed=0)      # (40, 784) Bernoulli means, (40,) classes
    >>> q = run.encode(x, y)                                    # q(z | x, y): q.mean, q.stddev are [n, d]
    >>> means = run.decode(q.mean, y)                           # (n, 784) in [0, 1]
    >>> run.evaluate(iw_samples=100)                            # dict of nats per test image
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Distribution

from .config import TrainConfig, config_from_dict
from .data import DATASETS, NUM_CLASSES, load_raw, make_splits
from .errors import VaelabError
from .models import VAE, build_model, decoder_mean
from .runs import RunDir, load_checkpoint, read_json, read_metrics
from .train import DeviceSplit, resolve_device

CHECKPOINTS = ("best", "latest")


@dataclass
class Run:
    """A trained run: its config, its metrics and its model (in eval mode) on `device`."""

    path: Path
    config: TrainConfig
    model: VAE
    device: torch.device
    epoch: int
    checkpoint: str

    @property
    def class_names(self) -> tuple[str, ...]:
        return DATASETS[self.config.dataset].class_names

    @property
    def metrics(self) -> list[dict]:
        return read_metrics(RunDir(self.path).metrics)

    def _tensor(self, values, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=dtype, device=self.device)

    def _labels(self, y, n: int) -> torch.Tensor | None:
        if not self.model.conditional:
            return None
        if y is None:
            raise VaelabError("this run is class-conditional: pass the labels y")
        labels = self._tensor(y, torch.long).reshape(-1).expand(n) if np.ndim(y) == 0 else self._tensor(y, torch.long)
        if labels.min() < 0 or labels.max() >= self.model.num_classes:
            raise VaelabError(f"labels must be 0..{self.model.num_classes - 1}")
        return labels

    @torch.no_grad()
    def encode(self, x, y=None) -> Distribution:
        """q(z | x[, y]) for images x (n, 784) in [0, 1]: a distribution with .mean and .stddev [n, d]."""
        x = self._tensor(x)
        return self.model.encoder(x, self._labels(y, x.shape[0]))

    @torch.no_grad()
    def decode(self, z, y=None) -> np.ndarray:
        """Mean images of p(x | z[, y]) for codes z (n, d): (n, 784) in [0, 1]."""
        z = self._tensor(z)
        return decoder_mean(self.model.decoder(z, self._labels(y, z.shape[0]))).cpu().numpy()

    def reconstruct(self, x, y=None) -> np.ndarray:
        """Decode the posterior mean of each image: (n, 784) in [0, 1]."""
        return self.decode(self.encode(x, y).mean, y)

    @torch.no_grad()
    def sample(self, n: int | None = None, per_class: int | None = None, digit: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Generated images (Bernoulli means) and their classes (None for an unconditional model).

        Conditional: `per_class` images of each class 0..9 in class order, or of `digit` only.
        Unconditional: `n` images.
        """
        generator = torch.Generator().manual_seed(seed)
        if self.model.conditional:
            classes = [digit] if digit is not None else list(range(NUM_CLASSES))
            per_class = per_class or 8
            labels = np.repeat(np.array(classes), per_class)
            z = torch.randn(len(labels), self.model.latent_dim, generator=generator)
            return self.decode(z, labels), labels
        z = torch.randn(n or 64, self.model.latent_dim, generator=generator)
        return self.decode(z), None

    def test_data(self) -> DeviceSplit:
        """The test split as this run saw it (same binarisation), on the run's device."""
        raw = load_raw(self.config.dataset, data_dir=self.config.data_dir)
        return DeviceSplit.from_split(make_splits(raw, self.config.binarize).test, self.device)

    def evaluate(self, iw_samples: int = 1000, class_samples: int | None = None, seed: int = 0,
                 progress: bool = False, compile: str = "auto") -> dict:
        """Test-set metrics in nats per image; see `vaelab.evaluate.evaluate_model`."""
        from .evaluate import evaluate_model

        return evaluate_model(self.model, self.test_data(), iw_samples=iw_samples, class_samples=class_samples,
                              seed=seed, progress=progress, compile=compile)


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto") -> Run:
    """Load a run directory's model from its best (by validation ELBO) or latest checkpoint."""
    if checkpoint not in CHECKPOINTS:
        raise VaelabError(f"--checkpoint {checkpoint!r} is not allowed: use best or latest")
    run = RunDir(Path(path)).require_run()
    config = config_from_dict(read_json(run.config))
    file = run.best if checkpoint == "best" and run.best.is_file() else run.checkpoint
    stored = load_checkpoint(file)
    target = resolve_device(device)
    model = build_model(config.model_config())
    stored.restore(model, path=file)
    model.to(target).eval()
    return Run(path=run.path, config=config, model=model, device=target, epoch=stored.info["epoch"],
               checkpoint="best" if file == run.best else "latest")
