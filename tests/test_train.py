"""Training on real MNIST slices: bounds in the right order, determinism, exact resume, checkpoints."""

import json
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab import inference
from vaelab.config import make_config
from vaelab.errors import RunError
from vaelab.runs.checkpoints import load_checkpoint, save_checkpoint
from vaelab.errors import TrainingDiverged
from vaelab.runs import RunDir, read_metrics
from vaelab.training import train

from .conftest import SMALL
from .progress import same_threads
from .rounding import assert_apart_by_rounding

TIMING_KEYS = {"seconds", "samples_per_second"}


def _without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.mark.slow
def test_trained_model_bounds_are_ordered(small_run):
    """On a trained CVAE: ELBO <= IW bound (k = 5) <= IS estimate (K = 500), averaged over 500 test images."""
    run = vaelab.load_run(small_run, device="cpu")
    test = run.test_data()
    x, y = test.x[:500], test.y[:500]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = inference.elbo(run.model, x, y, inference.draw_noise(run.model, 20, x.shape[0], g, "cpu")).bound
        iw5 = inference.iw_bound(run.model, x, y, inference.draw_noise(run.model, 5, x.shape[0], g, "cpu")).bound
        is500 = inference.log_likelihood_is(run.model, x, y, 500, g, chunk=100)
    differences = {"iw5 - elbo": iw5 - elbo, "is500 - iw5": is500 - iw5}
    for name, diff in differences.items():
        standard_error = diff.std().item() / math.sqrt(len(diff))
        assert diff.mean().item() > 3 * standard_error, (name, diff.mean().item(), standard_error)
    assert -250 < elbo.mean().item() < is500.mean().item() < -60  # nats per image, plausible for MNIST


@pytest.mark.slow
def test_metrics_and_files(small_run):
    rows = read_metrics(RunDir(small_run).metrics)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert math.isclose(row["valid_elbo"], row["valid_recon"] - row["valid_kl"], abs_tol=1e-4)
        assert row["samples_per_second"] > 0 and row["valid_kl"] > 0
    assert rows[-1]["valid_elbo"] > rows[0]["valid_elbo"]  # it learns
    assert RunDir(small_run).sample_grid(1).is_file() and RunDir(small_run).sample_grid(4).is_file()
    config = json.loads(RunDir(small_run).config.read_text())
    assert config["latent_dim"] == 8 and config["hidden"] == [128]


@pytest.mark.slow
def test_same_seed_same_metrics_and_resume_is_exact(tmp_path, mnist_raw):
    config = make_config(dict(SMALL, epochs=3))
    full = train(config, tmp_path / "full", log=lambda _: None, progress=False)
    again = train(config, tmp_path / "again", log=lambda _: None, progress=False)
    assert _without_timing(full) == _without_timing(again)

    train(make_config(dict(SMALL, epochs=1)), tmp_path / "split", log=lambda _: None, progress=False)
    resumed = train(config, tmp_path / "split", resume=True, explicit={"epochs"}, log=lambda _: None, progress=False)
    assert _without_timing(resumed) == _without_timing(full)
    a = load_checkpoint(RunDir(tmp_path / "full").checkpoint).tensors
    b = load_checkpoint(RunDir(tmp_path / "split").checkpoint).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_drops_an_epoch_logged_after_the_last_checkpoint(tmp_path, mnist_raw):
    config = make_config(dict(SMALL, epochs=2))
    full = train(config, tmp_path / "full", log=lambda _: None, progress=False)
    train(make_config(dict(SMALL, epochs=1)), tmp_path / "run", log=lambda _: None, progress=False)
    metrics = RunDir(tmp_path / "run").metrics
    metrics.write_text(metrics.read_text() + json.dumps({**full[0], "epoch": 2}) + "\n")  # as if killed mid-epoch
    rows = train(config, tmp_path / "run", resume=True, explicit={"epochs"}, log=lambda _: None, progress=False)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert _without_timing(rows) == _without_timing(full)


@pytest.mark.slow
def test_existing_run_needs_resume_and_settings_cannot_change(tmp_path, mnist_raw):
    train(make_config(dict(SMALL, epochs=1)), tmp_path / "run", log=lambda _: None, progress=False)
    with pytest.raises(RunError, match=r"already holds a run; resume it \(resume\), or choose another run directory \(out\)"):
        train(make_config(dict(SMALL, epochs=1)), tmp_path / "run", log=lambda _: None, progress=False)
    with pytest.raises(RunError, match="latent_dim differs"):
        train(make_config(dict(SMALL, epochs=2, latent_dim=4)), tmp_path / "run", resume=True,
              explicit={"latent_dim"}, log=lambda _: None, progress=False)


def test_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    small = vaelab.build_model("cvae", (1, 28, 28), 10, latent_dim=4, hidden=(16,))
    other = vaelab.build_model("cvae", (1, 28, 28), 10, latent_dim=5, hidden=(16,))
    save_checkpoint(tmp_path / "c.safetensors", small, {"epoch": 1})
    with pytest.raises(RunError, match=r"has shape \(.*\), the model needs"):
        load_checkpoint(tmp_path / "c.safetensors").restore(other)
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(RunError, match="unreadable|not written by vaelab"):
        load_checkpoint(tmp_path / "bad.safetensors")


@pytest.mark.slow
def test_non_finite_loss_stops_training_with_a_message(tmp_path, mnist_raw, monkeypatch, capsys):
    from vaelab.training import step as step_module

    real = step_module.Loss.forward

    def poisoned(self, *args):
        loss, sums = real(self, *args)
        return loss * float("nan"), {name: value * float("nan") for name, value in sums.items()}

    monkeypatch.setattr(step_module.Loss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite in epoch 1 at step 1 of the epoch; training stopped, no checkpoint was written yet"):
        train(make_config(dict(SMALL, epochs=1)), tmp_path / "nan", log=lambda _: None, progress=False)
    assert not RunDir(tmp_path / "nan").checkpoint.exists()
    # on the command line: one line, and exit code 1 (a failure while running; 2 is for bad input)
    from vaelab.cli import main


    assert main(["train", "--out", str(tmp_path / "cli"), "--no-progress", "--limit-train", "300", "--epochs", "1",
                 "--hidden", "16", "--latent-dim", "2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("vaelab: error: the loss became non-finite in epoch 1"), err  # the last line
    assert sum(line.startswith("vaelab: error") for line in err) == 1 and "Traceback" not in "".join(err)


@pytest.mark.slow
def test_iwae_objective_trains_a_vae(tmp_path, mnist_raw):
    rows = train(make_config(dict(SMALL, epochs=2, objective="iwae", samples=3, model="vae")), tmp_path / "iw",
                 log=lambda _: None, progress=False)
    assert "train_iw_bound" in rows[0] and "train_elbo" not in rows[0]
    assert rows[1]["train_iw_bound"] > rows[0]["train_iw_bound"] and rows[1]["valid_elbo"] > rows[0]["valid_elbo"]


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["gaussian", "continuous-bernoulli"])
def test_grayscale_likelihoods_train(tmp_path, mnist_raw, likelihood):
    rows = train(make_config(dict(SMALL, epochs=2, binarize="none", likelihood=likelihood)), tmp_path / "run",
                 log=lambda _: None, progress=False)
    assert rows[1]["valid_elbo"] > rows[0]["valid_elbo"]  # it learns
    run = vaelab.load_run(tmp_path / "run", device="cpu")
    assert run.test_data().x.max() == 1.0 and not run.test_data().binary  # grayscale, not 0/1 draws
    images, _ = run.sample(per_class=2)
    assert 0.0 <= images.min() and images.max() <= 1.0  # means of a density on [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("compile", ["off", "on"])
def test_same_seed_same_result_in_separate_processes(tmp_path, mnist_raw, compile):
    """Two processes, same seed, one of them beside another program that computes: bitwise-equal
    weights and metrics (CPU), eager or compiled. (With MKL free to take fewer threads on a busy
    machine, an Intel Xeon gave two such processes other bits.)"""
    import subprocess
    import sys
    from contextlib import nullcontext

    from .busy import beside_a_training_loop

    for name in ("a", "b"):
        with beside_a_training_loop() if name == "b" else nullcontext():
            done = subprocess.run([sys.executable, "-m", "vaelab", "train", "--out", str(tmp_path / name),
                                   "--limit-train", "5000", "--epochs", "1", "--no-progress", "--compile", compile],
                                  capture_output=True, text=True, timeout=600, env=same_threads())
        assert done.returncode == 0, done.stderr
        assert ("(compiled step)" in done.stderr) == (compile == "on"), done.stderr
    a = load_checkpoint(RunDir(tmp_path / "a").checkpoint).tensors
    b = load_checkpoint(RunDir(tmp_path / "b").checkpoint).tensors
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _without_timing(read_metrics(RunDir(tmp_path / "a").metrics)) == \
        _without_timing(read_metrics(RunDir(tmp_path / "b").metrics))


@pytest.mark.slow
def test_compiled_importance_weights_match_the_eager_ones(small_run, capsys):
    """The fast (torch.compile) path is the same estimator: same draws, the same number for each image
    to float32's rounding."""
    run = vaelab.load_run(small_run, device="cpu")
    test = run.test_data()
    x, y = test.x[:100], test.y[:100]
    eager = inference.log_likelihood_is(run.model, x, y, 40, torch.Generator().manual_seed(0), 20)
    fast = inference.log_likelihood_is(run.model, x, y, 40, torch.Generator().manual_seed(0), 20,
                                        inference.make_log_weights(run.model, compile=True))
    assert "running eagerly" not in capsys.readouterr().err  # it really compiled
    assert_apart_by_rounding(fast, eager, eager.abs(), "log p(x | y) per image")  # tests/rounding.py


@pytest.mark.slow
def test_python_api_as_the_readme_shows_it(small_run):
    run = vaelab.load_run(small_run)
    images, labels = run.sample(per_class=4, seed=0)
    assert images.shape == (40, 1, 28, 28) and labels.tolist() == [c for c in range(10) for _ in range(4)]
    assert 0.0 <= images.min() and images.max() <= 1.0
    test = run.test_data()
    z = run.encode(test.x[:8], test.y[:8])  # the codes: for the CVAE the posterior means, (8, d)
    assert z.shape == (8, 8)
    np.testing.assert_array_equal(z, run.model.encoder(test.x[:8], test.y[:8]).mean.detach().numpy())
    flat = run.encode(test.x[:8].reshape(8, 784).numpy(), test.y[:8].numpy())  # notebooks written for 0.1
    np.testing.assert_array_equal(flat, z)
    with pytest.raises(vaelab.VaelabError, match=r"images must be \(n, 1, 28, 28\) or \(n, 784\); got \(8, 28, 28\)"):
        run.encode(test.x[:8, 0], test.y[:8])
    with pytest.raises(vaelab.VaelabError, match="labels must be 8 classes in 0..9"):
        run.encode(test.x[:8], test.y[:8] + 5)
    means = run.decode(z, test.y[:8])
    assert means.shape == (8, 1, 28, 28)
    # decoding the posterior mean reconstructs the input better than a decoded prior sample does
    x = test.x[:8].numpy()
    assert ((means - x) ** 2).mean() < ((run.decode(torch.zeros(8, 8), test.y[:8]) - x) ** 2).mean()
    result = run.evaluate(iw_samples=5)
    assert result["n_test"] == 10_000 and result["log_likelihood"] > result["elbo"] - 1


@pytest.fixture(scope="module")
def label_using_run(tmp_path_factory, mnist_raw):
    """A CVAE with d = 2, 3 epochs on 10,000 images: z has too little room to hold the class, so the
    model must use y (a small CVAE with d = 8 lets z carry the class and draws any digit for any y)."""
    out = tmp_path_factory.mktemp("runs") / "cvae-d2"
    settings = dict(model="cvae", latent_dim=2, hidden=(256,), limit_train=10_000, batch_size=100,
                    sample_epochs=(1,), epochs=3)
    train(make_config(settings), out, log=lambda _: None, progress=False)
    return out


@pytest.mark.slow
def test_the_cvae_classifies_far_above_chance_and_draws_the_digit_asked_for(label_using_run, tmp_path):
    from vaelab.cli import main

    run = vaelab.load_run(label_using_run, device="cpu")
    assert run.evaluate(iw_samples=20)["accuracy"] > 0.6  # chance is 0.1; measured 0.81
    assert main(["sample", str(label_using_run), "-o", str(tmp_path / "threes.png"), "--digit", "3",
                 "--per-class", "16"]) == 0
    assigned = []
    for digit in range(10):
        images, labels = run.sample(per_class=16, digit=digit, seed=0)  # for digit 3, the command's grid
        assert images.shape == (16, 1, 28, 28) and (labels == digit).all()
        x = torch.bernoulli(torch.as_tensor(images), generator=torch.Generator().manual_seed(0))
        per_class = inference.log_likelihood_per_class(run.model, x, 20, torch.Generator().manual_seed(1))
        assigned.append((inference.classify(per_class, run.model.class_log_prior()) == digit).float().mean().item())
    assert assigned[3] >= 0.75 and sum(assigned) / 10 >= 0.8, assigned  # measured 0.88 and 0.95
