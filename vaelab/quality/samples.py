"""How good a model's samples are, in the eyes of the dataset's judge (`judge.py`): eval.json's "quality".

Samples are draws of the whole model (`models.Simulates.simulate`: a label from π where the family has
one, the latents from the prior, then x ~ p(x | latents)), as many as there are test images, so they are
images of the kind the test images are (binarised pixels for a Bernoulli decoder; a Gaussian
decoder's draws, pixel noise included, clamped to [0, 1]). From them:

- class_consistency (a family with a class label): the share of samples the judge labels as the
  class they were drawn for;
- prediction_entropy: the mean entropy of the judge's prediction for one sample (nats; low: the
  judge is sure what each sample shows), and class_entropy, the entropy of its mean prediction over
  the samples (nats, at most log classes: high when the samples cover the classes);
- frechet_distance between the test images and the samples in the judge's features (`frechet.py`),
  with frechet_floor, the same distance between as many validation images (or all there are) and
  the test images: what real images score;
- the judge's own test accuracy, gray and binarised, beside them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..data import make_splits
from ..errors import VaelabError
from ..inference.batches import chunk_generator
from ..models import Simulates
from .frechet import frechet_distance, gaussian_fit
from .judge import EPOCHS, JUDGE_VERSION, Judge, fingerprint, judge_path, load_judge, save_judge, train_judge

QUALITY_STREAM = 1 << 43  # the chunk numbers of the samples' generators start here
BATCH = 500


def judge_for(raw, cache_dir: str | Path, seed: int = 0, log=lambda _: None) -> Judge:
    """The judge of the dataset of `raw` (`data.RawData`), from the cache in `cache_dir` or trained on
    its training split (gray levels, the validation images left out) and cached there (where the
    folder cannot be written, used uncached). A VaelabError for a dataset of one class."""
    splits = make_splits(raw, "none")
    if splits.num_classes < 2:
        raise VaelabError(f"--quality: {raw.dataset} has one class, and the judge of samples is a classifier of "
                          "its classes; give the images labels (a folder per class) or leave out --quality")
    train, test = splits.train, splits.test
    expected = dict(dataset=raw.dataset, fingerprint=fingerprint(train.images, train.labels, test.images, test.labels),
                    seed=seed, epochs=EPOCHS, version=JUDGE_VERSION)
    path = judge_path(Path(cache_dir), raw.dataset, seed)
    channels, classes = splits.image_shape[0], splits.num_classes
    judge = load_judge(path, expected, channels, classes)
    if judge is None:
        log(f"training the judge of {raw.dataset} on {len(train):,} images (once; cached as {path})")
        judge = train_judge(train.images, train.labels, test.images, test.labels, classes, seed,
                            dataset=raw.dataset, log=log)
        try:
            save_judge(judge, path)
        except OSError as exc:  # the judge still serves this evaluation; the next one trains it again
            log(f"could not keep the judge in {path.parent} ({exc.strerror}); it is used once, not cached")
        log(f"judge: test accuracy {100 * judge.record.test_accuracy:.2f}% gray, "
            f"{100 * judge.record.test_accuracy_binarised:.2f}% binarised, trained in {judge.record.seconds:.0f} s")
    return judge


@torch.no_grad()
def quality_terms(model, judge: Judge, test, valid, seed: int = 0, count: int | None = None) -> dict:
    """eval.json's "quality" for `model` (a family that simulates, `models.Simulates`): `count` samples
    (default: as many as the test images), drawn in batches of BATCH, batch b with
    `chunk_generator(seed, QUALITY_STREAM + b)`; test and valid: the test and validation splits as the
    run sees them (`runtime.devices.DeviceSplit`)."""
    if not isinstance(model, Simulates):
        raise VaelabError(f"--quality: {type(model).__name__} has no simulate method (models.Simulates) to draw "
                          "samples from; leave out --quality")
    started = time.perf_counter()
    model.eval()
    device = test.x.device
    judge.net.to(device)
    count = count or test.x.shape[0]
    probs, features, agree = [], [], []
    for batch, start in enumerate(range(0, count, BATCH)):
        drawn = model.simulate(min(BATCH, count - start), chunk_generator(seed, QUALITY_STREAM + batch, device))
        found, seen = judge.read(drawn.x.clamp(0, 1))  # a Gaussian decoder's draws may leave [0, 1]
        probs.append(found)
        features.append(seen)
        if drawn.y is not None:
            agree.append(found.argmax(-1) == drawn.y)
    probs = torch.cat(probs).double()
    test_fit = gaussian_fit(judge.read(test.x)[1])
    result = {"samples": count}
    if agree:  # a family that draws labels
        result["class_consistency"] = torch.cat(agree).double().mean().item()
    entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1)
    marginal = probs.mean(0)
    result.update(prediction_entropy=entropy.mean().item(),
                  class_entropy=-(marginal * marginal.clamp(min=1e-30).log()).sum().item(),
                  class_entropy_cap=math.log(probs.shape[1]),
                  frechet_distance=frechet_distance(test_fit, gaussian_fit(torch.cat(features))),
                  frechet_floor=frechet_distance(test_fit, gaussian_fit(judge.read(valid.x[:count])[1])),
                  floor_images=min(count, valid.x.shape[0]),
                  judge={"test_accuracy": judge.record.test_accuracy,
                         "test_accuracy_binarised": judge.record.test_accuracy_binarised,
                         "epochs": judge.record.epochs, "seed": judge.record.seed,
                         "training_seconds": judge.record.seconds},
                  seconds=time.perf_counter() - started)
    return result
