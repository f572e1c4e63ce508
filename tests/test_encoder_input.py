"""q reading the gray levels of binarised images (--encoder-input grayscale): the splits keep them,
every bound and estimate stays one of the binarised images, and M2's recipe makes it its default."""

import math
from pathlib import Path

import pytest
import torch

from vaelab import inference
from vaelab.config import check_consistency, config_from_dict, make_config, read_toml
from vaelab.data import make_splits
from vaelab.errors import VaelabError
from vaelab.models import Noise, build_model
from vaelab.runs.migration import current_config
from vaelab.runtime.devices import DeviceSplit
from vaelab.training.step import step_noise

ROOT = Path(__file__).resolve().parents[1]

SHAPE = (1, 6, 5)
CPU = torch.device("cpu")


def gray_and_binary(batch, seed=1):
    generator = torch.Generator().manual_seed(seed)
    gray = torch.rand((batch, *SHAPE), generator=generator)
    return gray, torch.bernoulli(gray, generator=generator)


def test_a_binarised_split_keeps_the_gray_levels_it_was_drawn_from(mnist_raw):
    splits = make_splits(mnist_raw, "static", limit_train=500)
    for split in (splits.train, splits.valid, splits.test):
        gray, x = split.gray_images(), split.float_images()
        assert split.binary and gray.shape == x.shape
        assert (x[gray == 0] == 0).all() and (x[gray == 1] == 1).all()  # each pixel a draw of Bernoulli(gray)
        # 500 x 784 pixels or more, each of variance 1/4 at most: the means differ by 5 standard errors at most
        assert abs(x.mean() - gray.mean()) < 5 * 0.5 / math.sqrt(x.size)
    test = DeviceSplit.from_split(splits.test, CPU, gray_input=True)
    assert torch.equal(test.seen, torch.from_numpy(splits.test.gray_images())) and test.read is test.seen
    assert DeviceSplit.from_split(splits.test, CPU).seen is None
    train = DeviceSplit.from_split(make_splits(mnist_raw, "dynamic", limit_train=500).train, CPU, gray_input=True)
    assert train.seen is train.x  # gray: each step binarises x afresh, and q reads the gray levels


def log_mean_exp_and_error(log_w):
    """log mean exp over draws [K, batch], and its delta-method standard error [batch]."""
    k = log_w.shape[0]
    w = (log_w - log_w.max(0).values).double().exp()
    return (torch.logsumexp(log_w.double(), 0) - math.log(k)), w.std(0) / (w.mean(0) * math.sqrt(k))


def test_q_reading_the_gray_levels_leaves_is_an_estimate_of_the_binarised_images_likelihood():
    """Any proposal gives the same log p(x) as K grows: the gray-reading q and the binary-reading q
    agree within their Monte-Carlo error, though their posteriors differ. Had the likelihood scored
    what q reads, the two would differ by the log-probability of other pixels."""
    torch.manual_seed(0)
    model = build_model("cvae", SHAPE, 4, latent_dim=2, hidden=(16,)).eval()
    gray, x = gray_and_binary(6)
    y = torch.arange(6) % 4
    with torch.no_grad():
        assert not torch.allclose(model.posterior(gray, y)[0], model.posterior(x, y)[0], atol=1e-3)
        noise = torch.randn(20_000, 6, 2, generator=torch.Generator().manual_seed(5))
        log_weights = inference.make_log_weights(model)
        gray_q, gray_error = log_mean_exp_and_error(log_weights(x, y, model.posterior(gray, y), noise))
        binary_q, binary_error = log_mean_exp_and_error(log_weights(x, y, model.posterior(x, y), noise))
        # five joint standard errors: fails by chance with probability below 1e-6 per image
        assert (gray_q - binary_q).abs().max() < 5 * (gray_error.square() + binary_error.square()).sqrt().max()
        is_gray = inference.log_likelihood_is(model, x, y, 20_000, torch.Generator().manual_seed(5), seen=gray)
        # the evaluation's estimator, with q reading the gray levels: other draws (it chunks them), the same number
        assert (is_gray.double() - gray_q).abs().max() < 5 * math.sqrt(2) * gray_error.max()
        elbo = inference.elbo(model, x, y, noise, seen=gray)  # 20,000 draws: its own error is negligible
        assert (elbo.bound.double() < gray_q + 5 * gray_error).all()  # a bound on the same log p(x)
        assert not torch.allclose(elbo.bound, inference.elbo(model, x, y, noise[:1]).bound)


@pytest.mark.parametrize("family", ["m2", "adgm"])
def test_a_semi_supervised_family_reads_what_q_is_given_and_scores_the_binarised_images(family):
    torch.manual_seed(0)
    model = build_model(family, SHAPE, 4, latent_dim=3, hidden=(16,), alpha=2.0).eval()
    gray, x = gray_and_binary(5)
    y = torch.tensor([1, 3])  # the last two are labelled
    generator = torch.Generator().manual_seed(2)
    noise = Noise(inference.draw_noise(model, 2, 3, generator, "cpu", labelled=False),
                  inference.draw_noise(model, 2, 2, generator, "cpu"))
    read_gray = model.objective(x, y, noise, inference.elbo, seen=gray)
    read_binary = model.objective(x, y, noise, inference.elbo)
    assert not torch.allclose(read_gray.bound, read_binary.bound)
    # the labelled images: the shared bound with q reading the gray levels, and log π_y
    labelled = inference.elbo(model, x[3:], y, noise.labelled, seen=gray[3:])
    torch.testing.assert_close(read_gray.bound[3:], labelled.bound + model.class_log_prior()[y])
    # what the decoder scores is x: the same q on other pixels gives another bound
    other = model.objective(1 - x, y, noise, inference.elbo, seen=gray)
    assert (other.parts["recon"] != read_gray.parts["recon"]).all()
    if family == "m2":  # the unlabelled images' label term is KL(q(y | gray) ‖ π)
        q_y = model.classifier(gray[:3])
        expected = (q_y.probs * (q_y.logits - model.class_log_prior())).sum(-1)
        torch.testing.assert_close(read_gray.parts["label_kl"][:3], expected)


def test_m2s_recipe_is_its_default_and_a_file_or_a_flag_wins():
    config = make_config({"model": "m2", "labels": 100})
    assert (config.batch_size, config.encoder_input, config.latent_dim, config.hidden, config.activation,
            config.lr, config.binarize) == (200, "grayscale", 50, (500,), "softplus", 1e-3, "expected")
    given = make_config({"model": "m2", "labels": 100, "hidden": (64,)},
                        {"batch_size": 100, "encoder_input": "target", "binarize": "dynamic"})
    assert (given.batch_size, given.encoder_input, given.hidden, given.activation, given.binarize) == (
        100, "target", (64,), "softplus", "dynamic")
    check_consistency(given)
    conv = make_config({"model": "m2", "labels": 100, "network": "conv"})  # the MLP's widths are not conv's
    assert conv.batch_size == 200 and "hidden" not in conv.model_settings
    other = make_config({"model": "cvae"})
    assert (other.batch_size, other.encoder_input, other.hidden) == (128, "target", (500, 500))


@pytest.mark.parametrize("family", ["adgm", "sdgm"])
def test_the_auxiliary_families_take_m2s_recipe_by_default_as_their_config_files_write_it(family):
    config = make_config({"model": family, "labels": 100})
    recipe = (200, "grayscale", "expected", 50, None, (500,), "softplus", 1e-3)
    assert (config.batch_size, config.encoder_input, config.binarize, *(config.model_settings[name] for name in (
        "latent_dim", "aux_dim", "hidden", "activation")), config.lr) == recipe
    check_consistency(config)
    written = make_config(read_toml(ROOT / "configs" / f"cpu-{family}.toml"))
    assert (written.batch_size, written.encoder_input, written.binarize, *(written.model_settings[name] for name in (
        "latent_dim", "aux_dim", "hidden", "activation")), written.lr) == (*recipe[:4], 50, *recipe[5:])


def test_a_run_made_before_q_could_read_the_gray_levels_keeps_what_its_q_read():
    stored = dict(make_config({"model": "m2", "labels": 100}).to_dict(), binarize="dynamic")  # as it was then
    del stored["encoder_input"]
    assert config_from_dict(current_config(stored)).encoder_input == "target"


def test_a_vae_trains_and_evaluates_reading_the_gray_levels_of_static_pixels(tmp_path, mnist_raw):
    import vaelab
    from vaelab.training import train

    settings = dict(model="vae", latent_dim=4, hidden=(32,), binarize="static", encoder_input="grayscale",
                    limit_train=300, epochs=1, batch_size=100, compile="off", sample_epochs=(1,))
    rows = train(make_config(settings), tmp_path / "run", log=lambda _: None, progress=False)
    assert math.isfinite(rows[-1]["valid_elbo"])
    run = vaelab.load_run(tmp_path / "run", device="cpu")
    test = run.test_data()
    assert test.seen is not None and set(test.x.unique().tolist()) == {0.0, 1.0}
    result = run.evaluate(iw_samples=5)
    assert result["elbo"] <= result["log_likelihood"] + 1.0 and math.isfinite(result["log_likelihood"])


@pytest.mark.parametrize("family", ["vae", "cvae", "m2", "adgm", "sdgm"])
def test_the_bound_on_gray_levels_is_its_mean_over_every_binarisation_exactly(family):
    """--binarize expected: the objective with the gray levels as the Bernoulli's target is the
    mean of the objective of the binarised images, each weighted by its probability under
    Bernoulli(gray), for the same q (reading the gray levels) and the same noise. Here all 16
    binarisations of 2 x 2 images are summed, in float64: equal to rounding."""
    shape = (1, 2, 2)
    torch.manual_seed(0)
    semi = family in ("m2", "adgm", "sdgm")
    model = build_model(family, shape, 3, latent_dim=2, hidden=(8,), **({"alpha": 2.0} if semi else {}))
    model = model.double().eval()
    gray = torch.rand((4, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([2, 0]) if semi else torch.arange(4) % 3  # every label seen, where not semi-supervised
    noise = step_noise(model, 4, y.shape[0], 2, torch.Generator().manual_seed(2), CPU, torch.float64)
    on_gray = model.objective(gray, y, noise, inference.elbo, seen=gray)
    mean = torch.zeros_like(on_gray.maximised)
    for code in range(16):
        pixels = torch.tensor([(code >> i) & 1 for i in range(4)], dtype=torch.float64).view(shape)
        probability = (gray * pixels + (1 - gray) * (1 - pixels)).flatten(1).prod(1)  # [4], one per image
        mean += probability * model.objective(pixels.expand_as(gray), y, noise, inference.elbo, seen=gray).maximised
    torch.testing.assert_close(on_gray.maximised, mean, rtol=1e-10, atol=1e-10)


def test_expected_binarisation_needs_q_to_read_the_gray_levels_and_the_elbo():
    with pytest.raises(VaelabError, match="encoder_input|encoder-input"):
        check_consistency(make_config({"model": "m2", "labels": 100, "encoder_input": "target", "binarize": "expected"}))
    with pytest.raises(VaelabError, match="IWAE"):  # a log of a mean of weights is not linear in x
        check_consistency(make_config({"model": "m2", "labels": 100, "objective": "iwae", "samples": 5}))
    check_consistency(make_config({"model": "m2", "labels": 100, "binarize": "expected"}))


def test_a_run_with_expected_binarisation_never_binarises_its_training_images(tmp_path, mnist_raw, monkeypatch):
    from vaelab.training import step, train

    def refuse(*args):
        raise AssertionError("a training image was binarised")

    monkeypatch.setattr(step, "binarize", refuse)
    settings = dict(model="m2", labels=100, latent_dim=4, hidden=(32,), binarize="expected", limit_train=400,
                    epochs=1, batch_size=100, compile="off", sample_epochs=(1,))
    rows = train(make_config(settings), tmp_path / "run", log=lambda _: None, progress=False)
    assert math.isfinite(rows[-1]["train_elbo"]) and math.isfinite(rows[-1]["valid_elbo"])
    with pytest.raises(AssertionError, match="binarised"):  # the same run binarising afresh does
        train(make_config(dict(settings, binarize="dynamic")), tmp_path / "dynamic", log=lambda _: None, progress=False)
