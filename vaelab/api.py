"""The notebook API: train a run, or load a run directory, then sample, encode, decode, reconstruct and evaluate.

    >>> import vaelab
    >>> run = vaelab.train("runs/cvae-mnist", "mnist", epochs=10)   # or vaelab.load_run("runs/cvae-mnist")
    >>> images, labels = run.sample(per_class=4, seed=0)      # (40, 1, 28, 28) decoder means, (40,) classes
    >>> z = run.encode(x, y)                                    # (n, d) codes: the posterior means of z
    >>> means = run.decode(z, y)                                # (n, 1, 28, 28) in [0, 1]
    >>> run.evaluate(iw_samples=100)                            # dict of nats per test image

Images are (n, C, H, W) as the dataset's spec gives them, channels first: C = 1 for grey, 3 for
colour (red, green, blue), or any other count; flat rows of C * H * W pixels (channel by channel)
are accepted too. What `decode`, `reconstruct` and `sample` give are the means of p(x | z)
(`run.model.pixel_words` says which: Bernoulli, Gaussian or continuous-Bernoulli means), never
draws of x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig, config_from_dict
from .data import get_spec, load_raw, make_splits
from .errors import RunError, VaelabError
from .models import Model, Simulates, class_conditional, decoder_mean
from .runs import RunDir, check_agreement, new_model, read_metrics, stored_config, write_json
from .runs.checkpoints import Checkpoint, parse_checkpoint
from .runtime.devices import DeviceSplit, resolve_device
from .runtime.processes import SINGLE, Processes

CHECKPOINTS = ("best", "latest")


@dataclass
class Run:
    """A trained run: its config, its metrics and its model (in eval mode) on `device`."""

    path: Path
    config: TrainConfig
    model: Model
    device: torch.device
    epoch: int
    checkpoint: str

    @property
    def class_names(self) -> tuple[str, ...]:
        return get_spec(self.config.dataset).class_names

    @property
    def metrics(self) -> list[dict]:
        return read_metrics(RunDir(self.path).metrics)

    def _images(self, x) -> torch.Tensor:
        """x as [n, C, H, W] float32 on the run's device, from (n, C, H, W) or flat (n, C * H * W)."""
        x = torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x), dtype=torch.float32, device=self.device)
        shape = self.model.image_shape
        if x.ndim == 2 and x.shape[1] == math.prod(shape):
            x = x.reshape(-1, *shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            raise VaelabError(f"images must be (n, {', '.join(map(str, shape))}) or (n, {math.prod(shape)}); "
                              f"got {tuple(x.shape)}")
        return x

    def _labels(self, y, n: int) -> torch.Tensor | None:
        """y as [n] int64 for a class-conditional model (a single class is repeated); None otherwise."""
        if not class_conditional(self.model):
            return None
        if y is None:
            raise VaelabError("this run is class-conditional: pass the labels y")
        labels = torch.as_tensor(y if isinstance(y, torch.Tensor) else np.asarray(y), dtype=torch.long,
                                 device=self.device)
        labels = labels.reshape(-1).expand(n) if labels.ndim == 0 else labels
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.model.num_classes:
            raise VaelabError(f"labels must be {n} classes in 0..{self.model.num_classes - 1}")
        return labels

    @torch.no_grad()
    def encode(self, x, y=None) -> np.ndarray:
        """The representative code of each image x (n, C, H, W) in [0, 1]: (n, code_dim), the posterior
        mean of z for a Gaussian q (`Model.code`). x is what q reads: the gray levels, for a run
        trained with encoder_input "grayscale" (`test_data().read`)."""
        x = self._images(x)
        return self.model.code(x, self._labels(y, x.shape[0])).cpu().numpy()

    @torch.no_grad()
    def decode(self, z, y=None) -> np.ndarray:
        """Mean images of p(x | z[, y]) for codes z (n, code_dim): (n, C, H, W) in [0, 1]."""
        z = torch.as_tensor(z if isinstance(z, torch.Tensor) else np.asarray(z), dtype=torch.float32, device=self.device)
        return decoder_mean(self.model.decoder(z, self._labels(y, z.shape[0]))).cpu().numpy()

    def reconstruct(self, x, y=None) -> np.ndarray:
        """Decode the posterior mean of each image: (n, C, H, W) in [0, 1]."""
        return self.decode(self.encode(x, y), y)

    @torch.no_grad()
    def sample(self, n: int | None = None, per_class: int | None = None, digit: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Generated images (decoder means) and their classes (None for a model without classes).

        Class-conditional: `per_class` images of every class in class order, or of class `digit` only.
        Otherwise: `n` images.
        """
        generator = torch.Generator(device=self.device).manual_seed(seed)
        if class_conditional(self.model):
            if digit is not None and not 0 <= digit < self.model.num_classes:
                raise VaelabError(f"{{digit}} {digit} is not a class of this run: use 0..{self.model.num_classes - 1}")
            classes = [digit] if digit is not None else list(range(self.model.num_classes))
            labels = np.repeat(np.array(classes), per_class or 8)
            z = self.model.sample_codes(len(labels), generator)
            return self.decode(z, labels), labels
        if digit is not None:
            raise VaelabError("{digit} needs a class-conditional run; this model has no class label")
        z = self.model.sample_codes(n or 64, generator)
        return self.decode(z), None

    def judge(self, log=lambda _: None):
        """The judge of this run's dataset (`vaelab.quality.judge_for`): read from vaelab's data cache, or
        trained once with seed 0 and kept there (`log` tells of it)."""
        from .data import default_cache_dir
        from .quality import judge_for

        return judge_for(self._raw(), self.config.cache_dir or default_cache_dir(), log=log)

    def sample_quality(self, seed: int = 0, judge=None, log=lambda _: None) -> dict:
        """How good its samples are (`vaelab.quality.quality_terms`): as many samples as test images,
        judged by `judge` (by default `self.judge(log)`), against the test images and, for the floor,
        the validation images, both as this run sees them."""
        from .quality import quality_terms

        judge = judge or self.judge(log)
        splits = make_splits(self._raw(), self.config.binarize)
        gray = self.config.encoder_input == "grayscale"
        return quality_terms(self.model, judge, DeviceSplit.from_split(splits.test, self.device, gray),
                             DeviceSplit.from_split(splits.valid, self.device, gray), seed=seed)

    def _raw(self):
        return load_raw(self.config.dataset, data_dir=self.config.data_dir, cache_dir=self.config.cache_dir)

    def test_data(self) -> DeviceSplit:
        """The test split as this run saw it (same binarisation), on the run's device; `seen` holds
        the gray levels where its q reads them (`read`: what q reads)."""
        raw = load_raw(self.config.dataset, data_dir=self.config.data_dir, cache_dir=self.config.cache_dir)
        return DeviceSplit.from_split(make_splits(raw, self.config.binarize).test, self.device,
                                      self.config.encoder_input == "grayscale")

    def evaluate(self, iw_samples: int = 1000, class_samples: int | None = None, seed: int = 0,
                 progress: bool = False, compile: str = "auto", processes: Processes = SINGLE,
                 between_batches=lambda: None, ais=None, ais_images: int | None = None, bdmc: int = 0,
                 bdmc_settings=None, latents: bool = True, information_images: int | None = None) -> dict:
        """Test-set metrics in nats per image; see `vaelab.inference.evaluate_model` (ais: an
        `annealing.AisSettings` for annealed importance sampling too; bdmc: simulated images for
        bidirectional Monte Carlo, with bdmc_settings; latents: what every latent does, I(x; latents)
        on information_images test images)."""
        from .inference.evaluation import evaluate_model

        with processes.agreement("loading the test data"):
            data = self.test_data()
        return evaluate_model(self.model, data, iw_samples=iw_samples, class_samples=class_samples,
                              seed=seed, progress=progress, compile=compile, processes=processes,
                              between_batches=between_batches, ais=ais, ais_images=ais_images, bdmc=bdmc,
                              bdmc_settings=bdmc_settings, latents=latents, information_images=information_images)


def evaluate_run(run: Run, processes: Processes = SINGLE, quality: bool = False, log=lambda _: None,
                 **options) -> dict:
    """`run.evaluate(processes=processes, **options)`, recorded as the run's eval.json with the
    checkpoint, epoch, model and dataset it was made of (process 0 writes it); quality: with
    `run.sample_quality` too, made by process 0 (`log` tells of the judge's training)."""
    judge = None
    if quality:  # first, so that a judge that cannot be had stops before the evaluation, not after it
        if not isinstance(run.model, Simulates):
            raise VaelabError(f"--quality: {type(run.model).__name__} has no simulate method (models.Simulates) "
                              "to draw samples from; leave out --quality")
        with processes.agreement("finding the judge of the samples"):
            if processes.main:
                judge = run.judge(log)
    result = run.evaluate(processes=processes, **options)
    if quality:
        with processes.agreement("judging the samples"):
            if processes.main:
                result["quality"] = run.sample_quality(seed=options.get("seed", 0), judge=judge)
    result.update(checkpoint=run.checkpoint, epoch=run.epoch, model=run.config.model, dataset=run.config.dataset)
    with processes.agreement("writing eval.json"):
        if processes.main:
            write_json(RunDir(run.path).eval, result)
    return result


def _read_run(path: Path, checkpoint: str, modules: dict | None = None) -> tuple[TrainConfig, bytes, Path, Checkpoint]:
    """A run directory's config and its chosen checkpoint (bytes, file, contents), checked against each other."""
    run = RunDir(path).require_run()
    config = stored_config(run)
    file = run.best if checkpoint == "best" and run.best.is_file() else run.checkpoint
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise RunError(f"checkpoint {file} is unreadable ({exc.strerror}); use another checkpoint or train again") \
            from None
    stored = parse_checkpoint(data, file)
    check_agreement(config, stored, run.config, modules)
    return config, data, file, stored


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto", processes: Processes = SINGLE,
             encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None,
             classifier: torch.nn.Module | None = None) -> Run:
    """Load a run directory's model from its best (by validation ELBO) or latest checkpoint.

    config.json and the checkpoint are checked against each other before the model is built. A run
    whose family or network was registered outside vaelab needs the module that registers it
    imported first (a one-line NotRegistered names it); a run trained with modules handed to
    `vaelab.train` needs them again, built as they were (encoder, decoder, classifier): their
    weights are the checkpoint's. In a group of processes (`vaelab.runtime.processes`) process 0
    reads the run directory and sends the others its config and checkpoint: they need no access to it.
    """
    modules = {"encoder": encoder, "decoder": decoder, "classifier": classifier}
    modules = {role: module for role, module in modules.items() if module is not None} or None
    if checkpoint not in CHECKPOINTS:
        raise VaelabError(f"{{checkpoint}} {checkpoint!r} is not allowed: use best or latest")
    opened = None
    with processes.agreement("opening the run directory"):
        if processes.main:
            opened = _read_run(Path(path), checkpoint, modules)
    shared = processes.broadcast_json(opened and {"config": opened[0].to_dict(), "file": str(opened[2])})
    config = opened[0] if processes.main else config_from_dict(shared["config"], limits=False)
    file = Path(shared["file"])
    data = processes.broadcast_bytes(opened[1] if processes.main else None)
    stored = opened[3] if processes.main else parse_checkpoint(data, file)
    with processes.agreement("choosing the device"):
        target = processes.device(resolve_device(device))
    model = new_model(config, modules=modules)
    stored.restore(model)
    model.to(target).eval()
    return Run(path=Path(path), config=config, model=model, device=target, epoch=stored.info["epoch"],
               checkpoint="best" if file.name == RunDir(Path(path)).best.name else "latest")


def train(out: str | Path, dataset=None, *, resume: bool = False, config: str | Path | None = None,
          encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None,
          classifier: torch.nn.Module | None = None, progress: bool | None = None, log=print, **settings) -> Run:
    """Train a model, writing the run directory `out` as `vaelab train --out OUT` does, and return it loaded
    (its best checkpoint, as `load_run` gives it).

    dataset: a registered name ("mnist"), an .npz file or a folder of class subfolders (as
    --dataset), or data in memory: images [N, C, H, W] (uint8 0..255 or floats in [0, 1]; numpy
    or torch), a pair (images, labels [N] or None), or a torch Dataset of (image, label) items;
    data in memory is stored in the run as OUT/data.npz (`data.user.images_and_labels`). Default:
    mnist, or on resume the run's own.
    settings: every setting of `vaelab train`, by its name (lr=1e-3, model="vae", latent_dim=20,
    and the settings of the family and network, `vaelab.models.settings_of`), with the command
    line's defaults; config: a TOML file of settings, which the keywords override.
    encoder, decoder (classifier, for a family with q(y | x)): your own torch modules as the
    family's networks (network "given"; the shape contract is the family's, see `Network`):
    they are trained in place and never pickled; loading the run again needs them again
    (`load_run(out, encoder=..., decoder=...)`). To name a network instead, register it
    (`vaelab.register_network`) and pass network=NAME.
    resume: continue the run in `out` from its last checkpoint; progress: progress bars (default:
    where stderr is a terminal or a notebook); log: where the run's lines go.
    SIGINT or SIGTERM saves the state and raises TrainingInterrupted; resume=True then continues exactly.
    """
    import sys

    from .config import make_config, read_toml
    from .data.user import images_and_labels, write_npz
    from .models import given_settings
    from .training import train as train_run

    modules = {"encoder": encoder, "decoder": decoder, "classifier": classifier}
    settings = given_settings(modules, settings)
    modules = {role: module for role, module in modules.items() if module is not None}
    run_dir = RunDir(Path(out))
    in_memory = dataset is not None and not isinstance(dataset, (str, Path))
    if in_memory:  # read and checked first; written where the run's dataset setting names it, once all is checked
        images, labels, names = images_and_labels(dataset)
        dataset = str(run_dir.data.resolve())
    given = {name: value for name, value in settings.items() if value is not None}
    if dataset is not None:
        given["dataset"] = str(dataset)
    file_values = read_toml(config) if config is not None else {}
    made = make_config(file_values, given)
    if in_memory:
        same = False
        if run_dir.data.is_file():
            with np.load(run_dir.data, allow_pickle=False) as stored:
                same = np.array_equal(stored["images"], images) and np.array_equal(stored["labels"], labels)
            if not same and run_dir.config.is_file():
                raise VaelabError(f"{run_dir.path} holds a run trained on other data ({run_dir.data}); give its data, "
                                  "or another run directory (out)")
        if not same:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            write_npz(run_dir.data, images, labels, names)
    if progress is None:
        progress = sys.stderr.isatty() or "ipykernel" in sys.modules
    train_run(made, out, resume=resume, explicit=set(given) | set(file_values), log=log, progress=progress,
              modules=modules or None, resume_words=f"vaelab.train({str(out)!r}, ..., resume=True)")
    return load_run(out, device=made.device, **modules)
