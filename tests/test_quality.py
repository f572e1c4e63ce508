"""Sample quality (`vaelab.quality`): the Fréchet distance, the judge and its cache, eval.json's "quality".

The judge here is trained on a slice of real MNIST for one epoch (seconds): its features are what the
Fréchet distance is measured in, and the known answers hold for any features that see the images.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaelab.quality import frechet_distance, gaussian_fit, load_judge, quality_terms, save_judge, train_judge
from vaelab.quality import judge as judge_module
from vaelab.quality import samples as samples_module
from vaelab.quality.judge import JUDGE_VERSION, fingerprint

SLICE, TEST = 4000, 1000


@pytest.fixture(scope="module")
def small_judge(mnist_raw):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return train_judge(mnist_raw.train_images[:SLICE], mnist_raw.train_labels[:SLICE], mnist_raw.test_images[:TEST],
                       mnist_raw.test_labels[:TEST], 10, seed=0, epochs=1)


@pytest.mark.slow
def test_a_judge_trained_on_a_slice_reads_digits(small_judge):
    # one epoch on 4,000 images (31 steps): well above chance (10 %) on gray and binarised test images
    assert small_judge.record.test_accuracy > 0.5 and small_judge.record.test_accuracy_binarised > 0.5


def features(judge, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return gaussian_fit(judge.read(images)[1])


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets.pow(2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum())
    out = F.conv2d(images, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, kernel.view(1, 1, -1, 1), padding=(radius, 0))


@pytest.mark.slow
def test_the_frechet_distance_of_images_to_themselves_is_zero_and_grows_as_they_are_spoiled(small_judge, mnist_raw):
    test = torch.from_numpy(mnist_raw.test_images[:TEST]).float() / 255
    reference = features(small_judge, test)
    assert frechet_distance(reference, reference) == pytest.approx(0.0, abs=1e-6)
    blur = [frechet_distance(reference, features(small_judge, blurred(test, sigma))) for sigma in (0.5, 1.0, 2.0)]
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(0))
    noisy = [frechet_distance(reference, features(small_judge, (test + level * noise).clamp(0, 1)))
             for level in (0.1, 0.3, 0.6)]
    assert 0 < blur[0] < blur[1] < blur[2]
    assert 0 < noisy[0] < noisy[1] < noisy[2]


def test_the_frechet_distance_of_gaussians_matches_its_closed_form():
    """Diagonal Gaussians: d² = |μ₁ - μ₂|² + Σ (σ₁ - σ₂)²."""
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([2.0, 2.0, 1.5])
    found = frechet_distance((mu1.double(), torch.diag(s1**2).double()), (mu2.double(), torch.diag(s2**2).double()))
    assert found == pytest.approx(((mu1 - mu2) ** 2).sum().item() + ((s1 - s2) ** 2).sum().item(), rel=1e-9)


def expected_record(mnist_raw, seed=0, epochs=1) -> dict:
    return dict(dataset="", fingerprint=fingerprint(mnist_raw.train_images[:SLICE], mnist_raw.train_labels[:SLICE],
                                                    mnist_raw.test_images[:TEST], mnist_raw.test_labels[:TEST]),
                seed=seed, epochs=epochs, version=JUDGE_VERSION)


@pytest.mark.slow
def test_the_judges_cache_gives_back_the_same_judge_and_refuses_a_stale_or_damaged_one(small_judge, mnist_raw, tmp_path):
    path = tmp_path / "mnist-judge.safetensors"
    save_judge(small_judge, path)
    assert json.loads(path.with_suffix(".json").read_text())["test_accuracy"] == small_judge.record.test_accuracy
    again = load_judge(path, expected_record(mnist_raw), 1, 10)
    assert again is not None and again.record == small_judge.record
    images = torch.from_numpy(mnist_raw.test_images[:50]).float() / 255
    assert torch.equal(again.read(images)[0], small_judge.read(images)[0])
    assert load_judge(path, expected_record(mnist_raw, seed=1), 1, 10) is None  # another seed
    assert load_judge(path, expected_record(mnist_raw, epochs=3), 1, 10) is None  # another recipe
    assert load_judge(path, dict(expected_record(mnist_raw), fingerprint="0" * 64), 1, 10) is None  # other data
    assert load_judge(path, expected_record(mnist_raw), 3, 10) is None  # weights of another shape
    data = bytearray(path.read_bytes())
    data[10:20] = b"x" * 10
    path.write_bytes(bytes(data))
    assert load_judge(path, expected_record(mnist_raw), 1, 10) is None  # damaged
    assert load_judge(tmp_path / "missing.safetensors", expected_record(mnist_raw), 1, 10) is None


@pytest.mark.slow
def test_quality_terms_of_a_small_cvae(small_run, small_judge, mnist_raw):
    from vaelab.api import load_run
    from vaelab.data import make_splits
    from vaelab.runtime.devices import DeviceSplit

    run = load_run(small_run)
    test, valid = real_images(mnist_raw, 2000)
    found = quality_terms(run.model, small_judge, test, valid, seed=0, count=600)
    assert found["samples"] == 600 and found["floor_images"] == 600  # the floor at as many images
    assert 0 <= found["class_consistency"] <= 1
    assert 0 <= found["prediction_entropy"] <= math.log(10)
    assert 0 < found["class_entropy"] <= found["class_entropy_cap"] == pytest.approx(math.log(10))
    assert found["frechet_distance"] > found["frechet_floor"] > 0
    assert quality_terms(run.model, small_judge, test, valid, seed=0, count=600)["frechet_distance"] == \
        found["frechet_distance"]  # the same seed, the same samples


def real_images(mnist_raw, count: int):
    """The first `count` test and validation images, binarised as a run sees them (`DeviceSplit`s)."""
    from vaelab.data import make_splits
    from vaelab.runtime.devices import DeviceSplit

    splits = make_splits(mnist_raw, "dynamic")
    test, valid = (DeviceSplit.from_split(split, "cpu") for split in (splits.test, splits.valid))
    return tuple(DeviceSplit(x=split.x[:count], y=split.y[:count], binary=True) for split in (test, valid))


class Replay:
    """A "model" whose samples are given images with their labels, in order (`models.Simulates`)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y, self.next = x, y, 0

    def eval(self):
        return self

    def simulate(self, count, generator):
        from vaelab.models import Simulated

        rows = slice(self.next, self.next + count)
        self.next += count
        return Simulated(self.x[rows], self.y[rows], torch.zeros(count, 1))


@pytest.mark.slow
def test_samples_that_are_real_images_score_as_real_images(small_judge, mnist_raw):
    """Replaying the validation images as samples: the class consistency is the judge's accuracy on
    them, and the Fréchet distance is the floor."""
    test, valid = real_images(mnist_raw, 2000)
    found = quality_terms(Replay(valid.x, valid.y), small_judge, test, valid, count=2000)
    accuracy = (small_judge.read(valid.x)[0].argmax(-1) == valid.y).double().mean().item()
    # the samples are judged 500 at a time, the images here 1,000 at a time: another batch may round the
    # logits otherwise in their last float32 bits and turn a near-tie, so two images of 2,000 may differ;
    # the features so rounded (1e-6 of their size) move the distance, a sum of traces 100 times its
    # size here, by far less than 1e-3 of it
    assert found["class_consistency"] == pytest.approx(accuracy, abs=2 / 2000)
    assert found["frechet_distance"] == pytest.approx(found["frechet_floor"], rel=1e-3)


@pytest.fixture
def judge_cache(small_judge, mnist_raw, tmp_path, monkeypatch):
    """A cache folder in which `judge_for` takes the slice judge for MNIST's, training it (counted in
    the list returned) where it finds none."""
    import vaelab.data

    trained = []

    def train(*args, **kwargs):
        trained.append(1)
        return small_judge

    monkeypatch.setattr(samples_module, "train_judge", train)
    monkeypatch.setattr(samples_module, "EPOCHS", small_judge.record.epochs)
    monkeypatch.setattr(samples_module, "fingerprint", lambda *arrays: small_judge.record.fingerprint)
    monkeypatch.setattr(samples_module, "load_judge", lambda path, wanted, *shape: judge_module.load_judge(
        path, dict(wanted, dataset=small_judge.record.dataset), *shape))
    monkeypatch.setattr(vaelab.data, "default_cache_dir", lambda: tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache", trained


@pytest.mark.slow
def test_the_judge_is_trained_once_then_read_from_the_cache(judge_cache, mnist_raw):
    from vaelab.quality import judge_for

    cache, trained = judge_cache
    first, second = judge_for(mnist_raw, cache), judge_for(mnist_raw, cache)
    assert len(trained) == 1 and second.record == first.record
    assert sorted(path.name for path in cache.iterdir()) == ["mnist-judge-v1-seed0.json",
                                                             "mnist-judge-v1-seed0.safetensors"]


@pytest.mark.slow
def test_evaluate_with_quality_writes_its_figures_to_eval_json(judge_cache, small_run, tmp_path, capsys):
    import shutil

    from vaelab.cli import main

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert main(["evaluate", str(run), "--iw-samples", "2", "--quality", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Fréchet distance in its features" in printed and "latents: z" in printed
    written = json.loads((run / "eval.json").read_text())
    assert written["quality"]["samples"] == 10000 and 0 <= written["quality"]["class_consistency"] <= 1
    assert written["latents"]["layers"]["z"]["units"] == 8
    assert np.isfinite(written["quality"]["frechet_distance"])
    # the report shows them: the units' chart, and rows of its test table
    from vaelab.report.content import build_run_section

    section = build_run_section(run)
    assert "latent-units" in [figure.name for figure in section.figures]
    rows = [row[0] for row in section.test_table.rows]
    assert any(row.startswith("z: active units") for row in rows) and any("Fréchet distance" in row for row in rows)


def test_a_dataset_of_one_class_has_no_judge(tmp_path):
    from vaelab.data.sources import RawData
    from vaelab.errors import VaelabError
    from vaelab.quality import judge_for

    images = np.zeros((120, 1, 8, 8), dtype=np.uint8)
    path = tmp_path / "one-class.npz"
    np.savez(path, images=images, labels=np.zeros(120, dtype=np.int64))
    from vaelab.data import load_raw

    raw = load_raw(str(path), cache_dir=tmp_path / "cache")
    assert isinstance(raw, RawData)
    with pytest.raises(VaelabError, match="one class"):
        judge_for(raw, tmp_path / "cache")


def test_quality_without_simulate_is_refused_before_the_evaluation(tmp_path):
    """A family without `simulate` cannot be judged: one line, and nothing evaluated first."""
    from vaelab.api import Run, evaluate_run
    from vaelab.errors import VaelabError

    class Evaluated(Run):
        def evaluate(self, **options):
            raise AssertionError("evaluated before --quality was refused")

    run = Evaluated(path=tmp_path, config=None, model=torch.nn.Linear(1, 1), device=torch.device("cpu"), epoch=0,
                    checkpoint="best")
    with pytest.raises(VaelabError, match="simulate"):
        evaluate_run(run, quality=True)
