"""Test-set evaluation: ELBO with its terms, importance-sampled log-likelihood, for a class-conditional
model the marginal log-likelihood and the Bayes classifier's accuracy, and for a model with a
classifier q(y | x) (M2) that classifier's accuracy and confusion matrix and the bound with y summed
out. All figures are mean nats per test image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from . import objectives
from .distributed import SINGLE, Processes
from .fast import use_compile
from .devices import DeviceSplit, NamedSums, chunk_generator
from .models import Classifies, Model, Noise, class_conditional

ROWS_PER_CHUNK = 4096  # images x samples decoded at once: big enough for fast matmuls, small enough for the caches
COMPILE_FROM = 2_000_000  # decoder evaluations from which torch.compile's start-up (about 15 s) pays off


@torch.no_grad()
def evaluate_model(model: Model, data: DeviceSplit, iw_samples: int = 1000, class_samples: int | None = None,
                   batch_size: int = 100, seed: int = 0, progress: bool = False, compile: str = "auto",
                   processes: Processes = SINGLE, between_batches: Callable[[], None] = lambda: None) -> dict:
    """Evaluate `model` on `data` (the fixed-binarised test split).

    - elbo and its parts (recon, the family's KL of every latent, ...): the ELBO with one draw of
      the latents per image; a KL in closed form where the family gives one (N(0, I)), else a
      Monte Carlo estimate at that draw (the VampPrior, a flow, a hierarchy).
    - log_likelihood: log p(x) (log p(x | y) for a conditional model) by importance sampling with
      q as proposal and `iw_samples` samples per image.
    - a model with a classifier q(y | x) also gets `classifier_terms`.
    - conditional models also get log_likelihood_marginal = log sum_y pi_y p(x | y) and accuracy of
      argmax_y p(y | x); these estimate p(x | y) for every class with `class_samples` samples each
      (default iw_samples // 10), the same number for every class so no class is favoured. The true
      class's estimate is made from the first class_samples of its iw_samples draws (decoded once for
      both), the other classes get class_samples fresh draws each: `decoder_passes` per image.

    compile: "on" evaluates the importance weights through torch.compile (same estimator, faster),
    "off" eagerly, "auto" compiles when there are at least COMPILE_FROM decoder evaluations.

    Batch b of batch_size images draws from its own generator (`chunk_generator(seed, b)`), so in
    a group of processes (`vaelab.distributed`) each takes its share of the batches, and the sums
    they reduce give the one-process figures (to float64 summation order).

    `between_batches` is called before every batch: the command line's CPU sharing looks at the
    machine then (`vaelab.threads.CpuShare.update`).
    """
    model.eval()
    labelled = class_conditional(model)
    device = data.x.device
    chunk = max(1, ROWS_PER_CHUNK // batch_size)
    if labelled and class_samples is None:
        class_samples = max(1, iw_samples // 10)
    sums = NamedSums()
    n = data.x.shape[0]
    evaluations = n * (decoder_passes(model, iw_samples, class_samples) if labelled else iw_samples)
    compiled = use_compile(compile, evaluations, COMPILE_FROM)
    log_weights = objectives.make_log_weights(model, compile=compiled)
    started = time.perf_counter()
    batches = range(math.ceil(n / batch_size))
    mine = batches[processes.rows(len(batches))]
    with tqdm(total=min(n, len(mine) * batch_size), desc="evaluate", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for batch in mine or range(0, 1):  # a process without a batch takes an empty one
            between_batches()
            start, generator = batch * batch_size, chunk_generator(seed, batch, device)
            stop = start + batch_size if batch in mine else start
            x, y = data.x[start:stop], data.y[start:stop]
            terms = objectives.elbo(model, x, y, objectives.draw_noise(model, 1, x.shape[0], generator, device, x.dtype))
            figures = {"elbo": terms.bound, **terms.parts}
            if labelled:  # the true class's first class_samples draws serve its per-class estimate
                log_likelihood, true_class = objectives.log_likelihood_prefixes(
                    model, x, y, (iw_samples, class_samples), generator, chunk, log_weights)
                per_class = objectives.log_likelihood_per_class(model, x, class_samples, generator, chunk,
                                                                log_weights, known=(y, true_class))
                log_pi = model.class_log_prior()
                figures.update(log_likelihood=log_likelihood,
                               log_likelihood_marginal=objectives.log_marginal_likelihood(per_class, log_pi),
                               accuracy=(objectives.classify(per_class, log_pi) == y).to(torch.float32))
            else:
                figures["log_likelihood"] = objectives.log_likelihood_is(model, x, y, iw_samples, generator, chunk,
                                                                         log_weights)
            sums.add(figures)
            bar.update(x.shape[0])
    result = {**sums.means(n, processes), "iw_samples": iw_samples, "n_test": n,
              "seconds": time.perf_counter() - started, "device": device.type, "compiled": compiled,
              "processes": processes.count}
    if labelled:
        result["class_samples"] = class_samples
    if isinstance(model, Classifies):
        result.update(classifier_terms(model, data, batch_size, seed, len(batches), processes))
    return result


@torch.no_grad()
def classifier_terms(model, data: DeviceSplit, batch_size: int, seed: int, first_chunk: int,
                     processes: Processes = SINGLE) -> dict:
    """For a family with a classifier q(y | x): its accuracy (a fraction) and confusion matrix
    (`confusion[true][predicted]`, image counts), and its bound on log p(x) with y summed out (its
    `objective` with the ELBO and no label seen) with the parts, as unlabelled_elbo and
    unlabelled_<part>, mean nats per image. Batch b draws its noise from
    `chunk_generator(seed, first_chunk + b)`; the processes share the batches."""
    device = data.x.device
    sums = NamedSums()
    confusion = torch.zeros(model.num_classes, model.num_classes, dtype=torch.int64, device=device)
    batches = range(math.ceil(data.x.shape[0] / batch_size))
    mine = batches[processes.rows(len(batches))]
    for batch in mine or range(0, 1):  # a process without a batch takes an empty one
        start = batch * batch_size
        stop = start + batch_size if batch in mine else start
        x, y = data.x[start:stop], data.y[start:stop]
        noise = objectives.draw_noise(model, 1, x.shape[0], chunk_generator(seed, first_chunk + batch, device),
                                      device, x.dtype, labelled=False)
        terms = model.objective(x, None, Noise(noise, None), objectives.elbo)
        sums.add({"unlabelled_elbo": terms.bound, **{f"unlabelled_{name}": value for name, value in terms.parts.items()}})
        confusion += objectives.confusion_matrix(model, x, y, batch_size)
    confusion = processes.sum(confusion)
    return {"classifier_accuracy": confusion.diagonal().sum().item() / data.x.shape[0],
            "confusion": confusion.tolist(), **sums.means(data.x.shape[0], processes)}


def decoder_passes(model, iw_samples: int, class_samples: int) -> int:
    """Decoder evaluations per test image for a class-conditional model, as `evaluate_model` makes them."""
    return max(iw_samples, class_samples) + class_samples * (model.num_classes - 1)


def evaluate_run(run, iw_samples: int = 1000, class_samples: int | None = None, seed: int = 0,
                 progress: bool = False, compile: str = "auto", processes: Processes = SINGLE,
                 between_batches: Callable[[], None] = lambda: None) -> dict:
    """Evaluate a loaded `vaelab.api.Run` and record the result as the run's eval.json (process 0 writes it)."""
    from .runs import RunDir, write_json

    result = run.evaluate(iw_samples=iw_samples, class_samples=class_samples, seed=seed, progress=progress,
                          compile=compile, processes=processes, between_batches=between_batches)
    result.update(checkpoint=run.checkpoint, epoch=run.epoch, model=run.config.model, dataset=run.config.dataset)
    with processes.agreement("writing eval.json"):
        if processes.main:
            write_json(RunDir(run.path).eval, result)
    return result
