"""Test-set evaluation: ELBO with its terms, importance-sampled log-likelihood, for a class-conditional
model the marginal log-likelihood and the Bayes classifier's accuracy, and for a model with a
classifier q(y | x) (M2) that classifier's accuracy and confusion matrix and the bound with y summed
out; asked for, annealed importance sampling on the test images (`ais_terms`) and bidirectional Monte
Carlo on images simulated from the model (`bdmc_terms`). All figures are mean nats per test image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from ..errors import VaelabError
from ..models import Classifies, Model, Noise, ShowsLatents, Simulates, class_conditional, read
from ..runtime.progress import progress_bar
from ..runtime.compilation import use_compile
from ..runtime.cpu_share import hold_thread_count
from ..runtime.devices import DeviceSplit
from ..runtime.precision import in_float32
from ..runtime.processes import SINGLE, Processes
from . import annealing, bounds, importance
from .batches import NamedSums, chunk_generator, images_in, shared_batches
from .latents import latent_terms

ROWS_PER_CHUNK = 4096  # images x samples decoded at once: big enough for fast matmuls, small enough for the caches
COMPILE_FROM = 2_000_000  # decoder evaluations from which torch.compile's start-up (about 15 s) pays off


@torch.no_grad()
@bounds.fixing_prior
@in_float32
def evaluate_model(model: Model, data: DeviceSplit, iw_samples: int = 1000, class_samples: int | None = None,
                   batch_size: int = 100, seed: int = 0, progress: bool = False, compile: str = "auto",
                   processes: Processes = SINGLE, between_batches: Callable[[], None] = lambda: None,
                   ais: annealing.AisSettings | None = None, ais_images: int | None = None, bdmc: int = 0,
                   bdmc_settings: annealing.AisSettings | None = None, latents: bool = True,
                   information_images: int | None = None) -> dict:
    """Evaluate `model` on `data` (the fixed-binarised test split; q reads `data.seen`, the gray
    levels, for a run that trained it so: every figure stays one of the binarised images).

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
    a group of processes (`vaelab.runtime.processes`) each takes its share of the batches, and the sums
    they reduce give the one-process figures (to float64 summation order).

    `between_batches` is called before every batch: the command line's CPU sharing looks at the
    machine then (`vaelab.runtime.cpu_share.CpuShare.update`).

    latents: also what every latent does, as "latents" (`latents.latent_terms`: active units, the KL of
    every unit, I(x; latents) on `information_images` test images, by default the family's choice),
    for a family that shows its latents.

    ais: also annealed importance sampling on the first `ais_images` test images (all by default),
    as "ais" (`ais_terms`); bdmc: also bidirectional Monte Carlo on that many simulated images, as
    "bdmc" (`bdmc_terms`), with `bdmc_settings` (by default ais's, or `annealing.AisSettings()`).
    """
    hold_thread_count()  # MKL computes with torch's thread count: the same seed, the same figures
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
    log_weights = bounds.make_log_weights(model, compile=compiled)
    started = time.perf_counter()
    batches = shared_batches(n, batch_size, processes)
    with progress_bar()(total=images_in(batches), desc="evaluate", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for batch, rows in batches:
            between_batches()
            generator = chunk_generator(seed, batch, device)
            x, y, seen = data.x[rows], data.y[rows], data.seen_rows(rows)
            terms = bounds.elbo(model, x, y, bounds.draw_noise(model, 1, x.shape[0], generator, device, x.dtype), seen=seen)
            figures = {"elbo": terms.bound, **terms.parts}
            if labelled:  # the true class's first class_samples draws serve its per-class estimate
                log_likelihood, true_class = importance.log_likelihood_prefixes(
                    model, x, y, (iw_samples, class_samples), generator, chunk, log_weights, seen)
                per_class = importance.log_likelihood_per_class(model, x, class_samples, generator, chunk,
                                                                log_weights, known=(y, true_class), seen=seen)
                log_pi = model.class_log_prior()
                figures.update(log_likelihood=log_likelihood,
                               log_likelihood_marginal=importance.log_marginal_likelihood(per_class, log_pi),
                               accuracy=(importance.classify(per_class, log_pi) == y).to(torch.float32))
            else:
                figures["log_likelihood"] = importance.log_likelihood_is(model, x, y, iw_samples, generator, chunk,
                                                                         log_weights, seen)
            sums.add(figures)
            bar.update(x.shape[0])
    result = {**sums.means(n, processes), "iw_samples": iw_samples, "n_test": n,
              "seconds": time.perf_counter() - started, "device": device.type, "compiled": compiled,
              "processes": processes.count}
    if labelled:
        result["class_samples"] = class_samples
    if isinstance(model, Classifies):
        result.update(classifier_terms(model, data, batch_size, seed, math.ceil(n / batch_size), processes))
    if latents and isinstance(model, ShowsLatents):
        result["latents"] = latent_terms(model, data, seed, information_images=information_images, parts=result)
    if ais is not None:
        images = min(ais_images or n, n)
        passes = ais.chains * (model.num_classes if labelled else 1) * ais.steps * ais.leapfrog
        result["ais"] = ais_terms(model, data, ais, images, iw_samples, seed,
                                  use_compile(compile, images * passes, COMPILE_FROM), processes, progress,
                                  between_batches)
    if bdmc:
        settings = bdmc_settings or ais or annealing.AisSettings()
        passes = 2 * settings.chains * settings.steps * settings.leapfrog  # forward and reverse chains
        result["bdmc"] = bdmc_terms(model, bdmc, settings, seed, use_compile(compile, bdmc * passes, COMPILE_FROM),
                                    processes, progress, between_batches)
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
    for batch, rows in shared_batches(data.x.shape[0], batch_size, processes):
        x, y, seen = data.x[rows], data.y[rows], data.seen_rows(rows)
        noise = bounds.draw_noise(model, 1, x.shape[0], chunk_generator(seed, first_chunk + batch, device),
                                      device, x.dtype, labelled=False)
        terms = model.objective(x, None, Noise(noise, None), bounds.elbo, seen=seen)
        sums.add({"unlabelled_elbo": terms.bound, **{f"unlabelled_{name}": value for name, value in terms.parts.items()}})
        confusion += importance.confusion_matrix(model, read(x, seen), y, batch_size)
    confusion = processes.sum(confusion)
    return {"classifier_accuracy": confusion.diagonal().sum().item() / data.x.shape[0],
            "confusion": confusion.tolist(), **sums.means(data.x.shape[0], processes)}


AIS_STREAM, BDMC_STREAM = 1 << 40, 1 << 41  # the chunk numbers of AIS's and BDMC's generators start here


@torch.no_grad()
@bounds.fixing_prior
@in_float32
def ais_terms(model: Model, data: DeviceSplit, settings: annealing.AisSettings, images: int | None = None,
              iw_samples: int = 1000, seed: int = 0, compile: bool = False, processes: Processes = SINGLE,
              progress: bool = False, between_batches: Callable[[], None] = lambda: None) -> dict:
    """AIS on the first `images` test images (all by default; `vaelab.inference.annealing`), with the IS
    estimate with `iw_samples` on the same images beside it, as eval.json's "ais": mean nats per
    image.

    log_likelihood (of x, or of x given its label) with standard_error, the Monte-Carlo error of
    that mean over the chains; log_likelihood_is and gap = AIS - IS; acceptance, the chains' mean
    acceptance probability; step_sizes, the tuned step size at ten points of the schedule (mean over
    images); seconds. A class-conditional model runs chains for every class of every image, so
    log_likelihood_marginal (log Σ_y π_y p(x | y)) and the Bayes classifier's accuracy get AIS too.
    Batch b draws from `chunk_generator(seed, AIS_STREAM + b)`; the processes share the batches.
    `between_batches` is called before every batch (as `evaluate_model`'s).
    """
    model.eval()
    labelled = class_conditional(model)
    n = min(images or data.x.shape[0], data.x.shape[0])
    classes = model.num_classes if labelled else 1
    batch_size = max(1, ROWS_PER_CHUNK // (settings.chains * classes))
    device = data.x.device
    log_weights = bounds.make_log_weights(model, compile=compile)
    sums, schedule = NamedSums(), None
    batches = shared_batches(n, batch_size, processes)
    started = time.perf_counter()
    with progress_bar()(total=images_in(batches), desc="AIS", unit="img", disable=not progress,
                        dynamic_ncols=True) as bar:
        for batch, rows in batches:
            between_batches()
            x, y, seen = data.x[rows], data.y[rows], data.seen_rows(rows)
            generator = chunk_generator(seed, AIS_STREAM + batch, device)
            if not x.shape[0]:  # a process without a batch adds empty figures
                names = ["log_likelihood", "variance", *(("log_likelihood_marginal", "variance_marginal", "accuracy")
                                                           if labelled else ()), "log_likelihood_is", "acceptance"]
                sums.add({name: x.new_zeros(0) for name in names})
                schedule = x.new_zeros(10 if settings.steps > 1 else 0, dtype=torch.float64) if schedule is None else schedule
                continue
            if labelled:  # every (image, class) pair, the image's classes side by side
                pairs = torch.arange(classes, device=device).repeat(x.shape[0])
                estimate = annealing.log_likelihood_ais(model, x.repeat_interleave(classes, 0), pairs, settings,
                                                        generator, log_weights,
                                                        None if seen is None else seen.repeat_interleave(classes, 0))
                per_class = estimate.log_likelihood.view(-1, classes)
                variance = estimate.standard_error.square().view(-1, classes)
                log_pi = model.class_log_prior()
                mine_own = per_class.gather(1, y[:, None])[:, 0]
                share = torch.softmax(per_class + log_pi, dim=1)  # each class's part of p(x): the delta method's weights
                figures = {"log_likelihood": mine_own, "variance": variance.gather(1, y[:, None])[:, 0],
                           "log_likelihood_marginal": importance.log_marginal_likelihood(per_class, log_pi),
                           "variance_marginal": (share.square() * variance).sum(1),
                           "accuracy": (importance.classify(per_class, log_pi) == y).to(torch.float32)}
            else:
                estimate = annealing.log_likelihood_ais(model, x, None, settings, generator, log_weights, seen)
                figures = {"log_likelihood": estimate.log_likelihood, "variance": estimate.standard_error.square()}
            figures["log_likelihood_is"] = importance.log_likelihood_is(model, x, y if labelled else None,
                                                                        iw_samples, generator, seen=seen)
            figures["acceptance"] = estimate.acceptance.view(x.shape[0], -1).mean(1)
            sizes = estimate.step_sizes.view(len(estimate.step_sizes), x.shape[0], classes).mean(-1)  # [T - 1, images]
            figures["step_sizes"] = sizes[torch.linspace(0, max(len(sizes) - 1, 0), 10).long()].T \
                if len(sizes) else x.new_zeros(x.shape[0], 0)
            sums.add({name: value for name, value in figures.items() if name != "step_sizes"})
            part = figures["step_sizes"].sum(0).double()
            schedule = part if schedule is None else schedule + part
            bar.update(x.shape[0])
    result = sums.means(n, processes)
    result["standard_error"] = math.sqrt(result.pop("variance") / n)
    if labelled:
        result["standard_error_marginal"] = math.sqrt(result.pop("variance_marginal") / n)
    result["gap"] = result["log_likelihood"] - result["log_likelihood_is"]
    if schedule is not None and len(schedule):
        result["step_sizes"] = (processes.sum(schedule) / n).tolist()
    return {**result, **settings.description(), "images": n, "iw_samples": iw_samples,
            "seconds": time.perf_counter() - started}


@torch.no_grad()
@bounds.fixing_prior
@in_float32
def bdmc_terms(model: Model, count: int, settings: annealing.AisSettings, seed: int = 0, compile: bool = False,
               processes: Processes = SINGLE, progress: bool = False,
               between_batches: Callable[[], None] = lambda: None) -> dict:
    """Bidirectional Monte Carlo on `count` images simulated from the model (`Model.simulate`), as
    eval.json's "bdmc": the forward chains' lower bound and the reverse chains' upper bound on
    log p(x[ | y]) of those images, mean nats per image, the sandwich's width (upper - lower) and
    each direction's acceptance; for a class-conditional model the labels are simulated too and the
    bounds are of log p(x | y). Batch b simulates and anneals with `chunk_generator(seed,
    BDMC_STREAM + b)`; `between_batches` is called before every batch."""
    if not isinstance(model, Simulates):
        raise VaelabError(f"{type(model).__name__} has no simulate method (models.Simulates), which bidirectional "
                          "Monte Carlo needs; leave out --bdmc")
    model.eval()
    batch_size = max(1, ROWS_PER_CHUNK // settings.chains)
    device = next(model.parameters()).device
    log_weights = bounds.make_log_weights(model, compile=compile)
    sums = NamedSums()
    batches = shared_batches(count, batch_size, processes)
    started = time.perf_counter()
    with progress_bar()(total=images_in(batches), desc="BDMC", unit="img", disable=not progress,
                        dynamic_ncols=True) as bar:
        for batch, rows in batches:
            between_batches()
            size = rows.stop - rows.start
            if not size:  # a process without a batch adds empty figures
                sums.add({name: torch.zeros(0, device=device) for name in
                          ("lower", "upper", "forward_acceptance", "reverse_acceptance")})
                continue
            generator = chunk_generator(seed, BDMC_STREAM + batch, device)
            simulated = model.simulate(size, generator)
            if not torch.isfinite(simulated.noise).all():
                raise VaelabError("BDMC: the latents of a simulated image could not be carried back to q's noise "
                                  "(an inverse flow step overflowed); this model cannot be checked by BDMC")
            sandwich = annealing.bidirectional(model, simulated.x, simulated.y, simulated.noise, settings, generator,
                                               log_weights)
            sums.add({"lower": sandwich.lower, "upper": sandwich.upper, "forward_acceptance": sandwich.forward_acceptance,
                      "reverse_acceptance": sandwich.reverse_acceptance})
            bar.update(size)
    result = sums.means(count, processes)
    result["width"] = result["upper"] - result["lower"]
    return {**result, **settings.description(), "images": count, "seconds": time.perf_counter() - started}


def decoder_passes(model, iw_samples: int, class_samples: int) -> int:
    """Decoder evaluations per test image for a class-conditional model, as `evaluate_model` makes them."""
    return max(iw_samples, class_samples) + class_samples * (model.num_classes - 1)


