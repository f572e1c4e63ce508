"""The networks (--network), the VampPrior (--prior vamp) and the schedules, against plain computations."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal
from torch.nn import functional as F

from vaelab import inference
from vaelab.models import GIVEN, NETWORKS, Noise, build_model, rsample
from vaelab.models.layers import ClassBias
from vaelab.models.priors import GaussianMixture
from vaelab.training.schedules import kl_weight, learning_rate

from .rounding import assert_apart_by_rounding
from .steps import assert_compiled_step_equals_eager

SMALL_NETS = dict(hidden=(16,), channels=4, depth=1)
SHAPES = [(1, 28, 28), (1, 5, 7), (3, 12, 10)]


@pytest.mark.parametrize("network", [name for name in NETWORKS if name != GIVEN])
@pytest.mark.parametrize("image_shape", SHAPES)
@pytest.mark.parametrize("family", ["vae", "cvae"])
def test_every_network_takes_samples_by_batch_and_gives_images_back(network, image_shape, family):
    torch.manual_seed(0)
    model = build_model(family, image_shape, 4, latent_dim=3, network=network, **SMALL_NETS)
    x = torch.rand(6, *image_shape).round()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    q = model.encoder(x, y)
    assert q.batch_shape == (6,) and q.event_shape == (3,)
    z = q.rsample((5,))  # [samples, batch, d]; y [batch] broadcasts over the samples
    p = model.decoder(z, y)
    assert p.batch_shape == (5, 6) and p.event_shape == image_shape
    assert p.log_prob(x).shape == (5, 6)  # x [batch, C, H, W] against [samples, batch]: no copy per sample
    one_by_one = torch.stack([model.decoder(z[s], y).base_dist.logits for s in range(5)])
    torch.testing.assert_close(p.base_dist.logits, one_by_one, rtol=1e-5, atol=1e-5)
    assert model.decoder(z[0, 0], y[0]).event_shape == image_shape  # a single code, a single label
    assert model.encoder_net.description and model.decoder_net.description


@pytest.mark.parametrize("network", ["conv", "resnet"])
def test_the_label_changes_what_a_conditional_network_gives(network):
    torch.manual_seed(0)
    model = build_model("cvae", (1, 12, 12), 3, latent_dim=2, network=network, **SMALL_NETS)
    with torch.no_grad():
        for parameter in model.parameters():  # the label's weights start at zero in ClassBias: move them
            parameter.add_(0.1 * torch.randn_like(parameter))
    x, z = torch.rand(2, 1, 12, 12), torch.randn(2, 2)
    for make in (lambda y: model.encoder(x, y).mean, lambda y: model.decoder(z, y).base_dist.logits):
        assert not torch.allclose(make(torch.tensor([0, 0])), make(torch.tensor([1, 1])))


def test_class_bias_equals_a_one_by_one_convolution_over_a_onehot_label_map():
    torch.manual_seed(0)
    bias = ClassBias(3, 5).double()
    with torch.no_grad():
        bias.weight.normal_()
    features = torch.randn(4, 5, 6, 7, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 2])
    label_map = F.one_hot(y, 3).double()[:, :, None, None].expand(4, 3, 6, 7)
    expected = features + F.conv2d(label_map, bias.weight.t()[:, :, None, None])
    torch.testing.assert_close(bias(features, y), expected)
    assert ClassBias(0, 5)(features, None) is features


def test_the_mixture_density_equals_the_mixture_computed_directly():
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(7, 3, generator=g, dtype=torch.float64)
    scale = torch.rand(7, 3, generator=g, dtype=torch.float64) + 0.05
    mixture = GaussianMixture(loc, scale)
    z = 3 * torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    components = Independent(Normal(loc, scale), 1).log_prob(z[..., None, :])  # [4, 5, 7]
    direct = torch.logsumexp(components, -1) - math.log(7)
    torch.testing.assert_close(mixture.log_prob(z), direct, rtol=0, atol=1e-9)
    assert mixture.event_shape == (3,) and mixture.batch_shape == ()


def test_the_mixture_draws_what_it_describes():
    loc = torch.tensor([[-3.0, 0.0], [3.0, 1.0]])
    scale = torch.tensor([[0.5, 1.0], [0.5, 2.0]])
    draws = rsample(GaussianMixture(loc, scale), (40_000,), torch.Generator().manual_seed(1))
    assert draws.shape == (40_000, 2)
    right = draws[:, 0] > 0
    assert abs(right.float().mean().item() - 0.5) < 0.01
    torch.testing.assert_close(draws[right].mean(0), loc[1], atol=0.05, rtol=0)
    torch.testing.assert_close(draws[right].std(0), scale[1], atol=0.05, rtol=0)
    again = rsample(GaussianMixture(loc, scale), (40_000,), torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)


@pytest.mark.parametrize("family", ["vae", "cvae"])
def test_the_vamp_prior_is_the_mean_of_the_encoders_posteriors_at_the_pseudo_inputs(family):
    torch.manual_seed(0)
    model = build_model(family, (1, 6, 6), 3, latent_dim=2, hidden=(8,), prior="vamp", pseudo_inputs=5).double()
    u, labels = model.pseudo_inputs()
    assert u.shape == (5, 1, 6, 6) and u.min() >= 0 and u.max() <= 1
    assert (labels is None) == (family == "vae")
    if labels is not None:
        assert labels.tolist() == [0, 1, 2, 0, 1]  # shared pseudo-inputs, each with a fixed label
    z = torch.randn(9, 2, dtype=torch.float64)
    by_hand = torch.logsumexp(torch.stack([model.encoder(u[k : k + 1], None if labels is None else labels[k : k + 1])
                                           .log_prob(z) for k in range(5)]), 0) - math.log(5)
    torch.testing.assert_close(model.prior().log_prob(z), by_hand)
    # the ELBO's KL is now a Monte-Carlo estimate, log q(z) - log p(z) at the drawn z
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64).round()
    y = torch.tensor([0, 1, 2, 0])
    noise = torch.randn(3, 4, 2, dtype=torch.float64)
    terms = inference.elbo(model, x, y, noise)
    q = model.encoder(x, y)
    z = q.base_dist.loc + q.base_dist.scale * noise
    torch.testing.assert_close(terms.parts["kl"], (q.log_prob(z) - model.prior().log_prob(z)).mean(0))
    # gradients reach the pseudo-inputs
    terms.bound.sum().backward()
    assert model.pseudo_inputs.values.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["vae", "cvae"])
def test_an_evaluation_encodes_the_pseudo_inputs_once_and_gives_the_same_numbers(family, monkeypatch):
    """The VampPrior made once per evaluation (`fixed_prior`): the IS estimate over several batches,
    AIS and BDMC ask the encoder for the pseudo-inputs once in all, and give what making it at every
    draw gives."""
    from vaelab.inference import annealing, evaluation
    from vaelab.runtime.devices import DeviceSplit

    torch.manual_seed(0)
    model = build_model(family, (1, 4, 4), 3 if family == "cvae" else 0, latent_dim=2, hidden=(8,), prior="vamp",
                        pseudo_inputs=5)
    g = torch.Generator().manual_seed(1)
    data = DeviceSplit(torch.bernoulli(torch.full((6, 1, 4, 4), 0.5), generator=g), torch.tensor([0, 1, 2, 0, 1, 2]),
                       True)
    settings = annealing.AisSettings(3, 2, 2, 0.2)
    made = []
    model.pseudo_inputs.register_forward_hook(lambda *_: made.append(1))

    def run():
        return evaluation.evaluate_model(model, data, iw_samples=4, batch_size=2, compile="off", ais=settings, bdmc=2)

    once = run()
    assert len(made) == 1  # the IS estimate (three batches), AIS and BDMC: once in all
    made.clear()
    with monkeypatch.context() as patched:
        patched.setattr(type(model), "fixed_prior", lambda self: __import__("contextlib").nullcontext())
        every_time = run()
    assert len(made) > 10
    # means over images of one sign: float32's rounding bound of their size (tests/rounding.py); an
    # HMC decision flips only if its uniform draw falls within rounding of its acceptance probability
    for name in ("elbo", "log_likelihood"):
        assert_apart_by_rounding(once[name], every_time[name], abs(every_time[name]), name)
    for part in ("ais", "bdmc"):
        for name in ("log_likelihood", "lower", "upper"):
            if name in once[part]:
                assert_apart_by_rounding(once[part][name], every_time[part][name], abs(every_time[part][name]),
                                         f"{part} {name}")


def test_warm_up_weighs_the_kl_and_reports_the_true_bound():
    torch.manual_seed(0)
    model = build_model("cvae", (1, 6, 6), 3, latent_dim=2, hidden=(8,)).double()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64).round()
    y = torch.tensor([0, 1, 2, 0])
    noise = torch.randn(3, 4, 2, dtype=torch.float64)
    half = torch.tensor(0.5, dtype=torch.float64)
    terms = model.objective(x, y, Noise(None, noise), inference.elbo, half)
    plain = inference.elbo(model, x, y, noise)
    torch.testing.assert_close(terms.bound, plain.bound)
    torch.testing.assert_close(terms.maximised, plain.parts["recon"] - 0.5 * plain.parts["kl"])
    torch.testing.assert_close(plain.bound, plain.parts["recon"] - plain.parts["kl"])
    iwae = model.objective(x, y, Noise(None, noise), inference.iw_bound, half)
    torch.testing.assert_close(iwae.bound, inference.iw_bound(model, x, y, noise).bound)
    q = model.encoder(x, y)
    z = q.base_dist.loc + q.base_dist.scale * noise
    log_px, log_ratio = model.decoder(z, y).log_prob(x), model.prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(iwae.bound, torch.logsumexp(log_px + log_ratio, 0) - math.log(3))
    torch.testing.assert_close(iwae.maximised, torch.logsumexp(log_px + 0.5 * log_ratio, 0) - math.log(3))
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(model.objective(x, y, Noise(None, noise), inference.iw_bound, one).maximised,
                               iwae.bound)
    # a β above 1 (β-VAE) weighs the KL more in what is maximised; the bound stays the ELBO
    beta = model.objective(x, y, Noise(None, noise), inference.elbo, torch.tensor(4.0, dtype=torch.float64))
    torch.testing.assert_close(beta.maximised, plain.parts["recon"] - 4 * plain.parts["kl"])
    torch.testing.assert_close(beta.bound, plain.bound)


def test_schedules():
    assert [kl_weight(0, e) for e in (1, 50)] == [1.0, 1.0]
    assert [kl_weight(4, e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert learning_rate(1e-3, "constant", 7, 10) == 1e-3
    assert learning_rate(1e-3, "cosine", 1, 10) == pytest.approx(1e-3)
    assert learning_rate(1e-3, "cosine", 10, 10) == pytest.approx(1e-5)
    middle = learning_rate(1e-3, "cosine", 6, 11)
    assert middle == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    rates = [learning_rate(1e-3, "cosine", e, 20) for e in range(1, 21)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(1e-3, "cosine", 1, 1) == 1e-3


def _quiet():
    return {"log": lambda _: None, "progress": False}


@pytest.mark.slow
@pytest.mark.parametrize("network", ["conv", "resnet"])
def test_each_network_learns_on_a_small_slice(network, tmp_path, mnist_raw):
    from vaelab.config import make_config
    from vaelab.training import train

    settings = dict(model="cvae", network=network, channels=8, latent_dim=8, limit_train=2000, batch_size=50,
                    epochs=3, compile="off", sample_epochs=(3,))
    rows = train(make_config(settings), tmp_path / network, **_quiet())
    assert rows[-1]["valid_elbo"] > rows[0]["valid_elbo"] + 5, [r["valid_elbo"] for r in rows]  # nats per image
    # the estimators keep their order on the trained network: ELBO < IW(5) < IS(K = 500), each tighter
    import vaelab

    run = vaelab.load_run(tmp_path / network, device="cpu")
    test = run.test_data()
    x, y = test.x[:200], test.y[:200]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo = inference.elbo(run.model, x, y, inference.draw_noise(run.model, 50, 200, g, "cpu")).bound
        iw5 = torch.stack([inference.iw_bound(run.model, x, y, inference.draw_noise(run.model, 5, 200, g, "cpu")).bound
                           for _ in range(10)]).mean(0)
        is_estimate = inference.log_likelihood_is(run.model, x, y, 500, g)
    for lower, upper in ((elbo, iw5), (iw5, is_estimate)):
        gap = upper - lower  # per image; its mean must be clearly above zero
        assert gap.mean() > 4 * gap.std() / math.sqrt(len(gap)) and gap.mean() > 0.1, (elbo.mean(), iw5.mean(),
                                                                                       is_estimate.mean())


@pytest.mark.slow
@pytest.mark.parametrize("network", ["conv", "resnet"])
def test_a_compiled_convolutional_step_equals_the_eager_one(network, mnist_raw):
    assert_compiled_step_equals_eager(dict(model="cvae", network=network, channels=4, latent_dim=4, batch_size=16,
                                           prior="vamp", pseudo_inputs=6), mnist_raw)


@pytest.mark.parametrize("network", ["conv", "resnet"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 12, 10)])
def test_channels_last_maps_give_the_step_of_plain_maps(network, shape):
    """The convolutional networks lay their maps out channels-last for speed: the step's loss and every
    gradient are what the plain (N, C, H, W) layout gives, to float rounding, for grey and colour
    images of any size, with the label entering as a bias per class."""
    torch.manual_seed(0)
    model = build_model("cvae", shape, 3, network=network, channels=8, latent_dim=4).double()
    x = torch.rand(6, *shape, dtype=torch.float64).round()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    noise = torch.randn(2, 6, 4, dtype=torch.float64)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        for network_part in (model.encoder_net, model.decoder_net):
            network_part.memory_format = layout
        model.zero_grad(set_to_none=True)
        terms = inference.elbo(model, x, y, noise)
        terms.bound.sum().backward()
        results.append((terms.bound.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
    (plain, plain_grads), (last, last_grads) = results
    torch.testing.assert_close(last, plain)
    for name in plain_grads:
        torch.testing.assert_close(last_grads[name], plain_grads[name], msg=name)
    assert type(model.encoder_net).memory_format == torch.channels_last  # what every network has by default


@pytest.mark.parametrize("network, compile", [("conv", False), ("resnet", False),
                                              pytest.param("conv", True, marks=pytest.mark.slow)])
def test_training_on_channels_last_maps_takes_the_steps_of_plain_maps(network, compile):
    """What the optimizer does with the gradients, not only the gradients: a step of vaelab's trainer
    (its step and fused Adam) on channels-last maps moves every parameter by Adam's first step from
    that parameter's own gradient, and those gradients are the plain maps' to rounding. torch's fused
    Adam reads a gradient in its parameter's memory order, so a channels-last weight gradient handed
    over as it is was applied to the wrong elements (the step lays it out as the parameter).

    One step, where Adam is exact to check: its first update of an element is -lr g / (|g| + eps)
    (m and v bias-corrected to g and g^2), whatever g's size; later steps would turn a rounding
    difference in a near-zero gradient into a step of lr, on one CPU and not another."""
    from vaelab.config import make_config
    from vaelab.training import DeviceSplit, new_training, train_epoch

    generator = torch.Generator().manual_seed(0)
    data = DeviceSplit(torch.rand(16, 1, 28, 28, generator=generator), torch.arange(16) % 10, binary=False)
    config = make_config(dict(model="cvae", network=network, channels=8, latent_dim=4, batch_size=16))
    gradients = []
    for layout in (torch.contiguous_format, torch.channels_last):
        t = new_training(config, torch.device("cpu"), dynamic=True, compile=compile)
        for network_part in (t.model.encoder_net, t.model.decoder_net):
            network_part.memory_format = layout
        before = {name: p.detach().clone() for name, p in t.model.named_parameters()}
        train_epoch(t.step, t.optimizer, data, 16, t.streams)  # one step
        assert all(p.grad.stride() == p.stride() for p in t.model.parameters() if p.grad is not None)
        (group,) = t.optimizer.param_groups
        for name, p in t.model.named_parameters():  # a misapplied element moves by up to 2 lr
            g = p.grad.double()
            expected = before[name].double() - group["lr"] * g / (g.abs() + group["eps"])
            # the update rounds to float32 once: half an ulp of the parameter, and a few of lr
            torch.testing.assert_close(p.detach().double(), expected, rtol=2 ** -23, atol=group["lr"] * 2 ** -20,
                                       msg=name)
        gradients.append({name: p.grad.clone() for name, p in t.model.named_parameters()})
    plain, last = gradients
    for name in plain:
        assert_apart_by_rounding(last[name], plain[name], what=name)  # tests/rounding.py


@pytest.mark.slow
def test_a_resumed_run_with_every_new_part_equals_the_uninterrupted_one(tmp_path, mnist_raw):
    """conv networks, the VampPrior, KL warm-up and the cosine schedule: saved, loaded, resumed exactly."""
    import vaelab
    from vaelab.config import make_config
    from vaelab.training import train

    settings = dict(model="cvae", network="conv", channels=4, latent_dim=4, prior="vamp", pseudo_inputs=10,
                    warmup=3, lr_schedule="cosine", limit_train=600, batch_size=50, compile="off",
                    sample_epochs=(1,))
    full = train(make_config(dict(settings, epochs=3)), tmp_path / "full", **_quiet())
    train(make_config(dict(settings, epochs=1)), tmp_path / "run", **_quiet())
    resumed = train(make_config(dict(settings, epochs=3)), tmp_path / "run", resume=True, explicit={"epochs"},
                    **_quiet())
    timing = {"seconds", "samples_per_second"}
    strip = [{k: v for k, v in row.items() if k not in timing} for row in full]
    assert [{k: v for k, v in row.items() if k not in timing} for row in resumed] == strip
    assert [row["kl_weight"] for row in full] == [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    assert full[0]["lr"] > full[1]["lr"] > full[2]["lr"] == pytest.approx(1e-5)
    run = vaelab.load_run(tmp_path / "run", device="cpu")
    assert "VampPrior" in " ".join(run.model.equations())
    images, labels = run.sample(per_class=2, seed=0)
    assert images.shape == (20, 1, 28, 28) and np.isfinite(images).all()
    result = run.evaluate(iw_samples=4, class_samples=2, compile="off")
    assert all(np.isfinite(result[key]) for key in ("elbo", "log_likelihood", "log_likelihood_marginal"))
