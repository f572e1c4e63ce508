"""What every latent does (`vaelab.inference.latents`): models with known answers.

A linear-Gaussian encoder q(z | x) = N(W x, I) on x ~ N(0, I_D) with orthonormal rows for the units
it switches on and zero rows for the others has A_u = |w_u|² = 1 or exactly 0, KL per unit
E[μ_u²] / 2 = 1/2 or 0, and I(x; z) = (k/2) log 2 for k units on (z = W x + ε, Cov z = 2 I on them).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaelab.inference import activity, information, latent_terms
from vaelab.inference.bounds import draw_noise
from vaelab.models import ADGM, M2, SDGM, VAE
from vaelab.models.latents import softplus_loc_scale
from vaelab.models.priors import gaussian_log_density_at
from vaelab.runtime.devices import DeviceSplit

PIXELS = 16  # x: a 1 x 4 x 4 "image" of independent N(0, 1) values


def linear_gaussian(on: int, off: int, flow: bool = False) -> VAE:
    """A VAE whose encoder is μ = W x, log σ² = 0, W's first `on` rows orthonormal, the other rows 0;
    flow: with an IAF of 2 steps set to the identity (to 1e-8), so that z's mean has no closed form."""
    d = on + off
    model = VAE((1, 4, 4), latent_dim=d, hidden=(8,), **(dict(posterior="iaf", flow_hidden=8) if flow else {}))
    if flow:
        with torch.no_grad():
            for step in model.latents.flow.steps:
                step.last.weight.zero_()
                step.last.bias.zero_()
                step.last.bias[d:] = 20.0  # σ = sigmoid(20): z' = σ z + (1 - σ) 0 = z to 2e-9
    linear = nn.Linear(PIXELS, 2 * d + (8 if flow else 0))
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        rows, _ = torch.linalg.qr(torch.randn(PIXELS, on, generator=torch.Generator().manual_seed(1)))
        linear.weight[:on] = rows.T
    model.encoder_net = nn.Sequential(nn.Flatten(-3), linear)
    return model


def gaussian_images(n: int, seed: int = 0) -> DeviceSplit:
    x = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    return DeviceSplit(x=x, y=torch.zeros(n, dtype=torch.int64), binary=False)


def test_switched_off_units_are_exactly_the_inactive_ones():
    model, data = linear_gaussian(on=3, off=4), gaussian_images(2000)
    found = latent_terms(model, data)["layers"]["z"]
    assert found["active"] == 3 and found["units"] == 7 and found["mean"] == "exact"
    assert all(value == 0 for value in found["activity"][3:])
    # A_u = 1 on, estimated from 2,000 images: the sample variance's standard error is sqrt(2 / n) = 0.032
    assert found["activity"][:3] == pytest.approx([1.0] * 3, abs=5 * math.sqrt(2 / 2000))
    # KL per unit: E[μ²]/2 = 1/2 on (standard error sqrt(2/n) / 2), 0 off
    assert found["kl_units"][:3] == pytest.approx([0.5] * 3, abs=5 * math.sqrt(2 / 2000) / 2)
    assert found["kl_units"][3:] == pytest.approx([0.0] * 4, abs=1e-6)


def test_information_of_a_linear_gaussian_model_matches_its_closed_form():
    """I = (3/2) log 2 = 1.040 nats; on 2,000 images its estimate lies below by the mixture's bias,
    which at this size is well under 0.05 nats (measured 0.01); the Monte-Carlo error is its standard error."""
    model, data = linear_gaussian(on=3, off=2), gaussian_images(2000)
    told = latent_terms(model, data)["information"]
    exact = 1.5 * math.log(2)
    assert told["images"] == 2000 and told["cap"] == pytest.approx(math.log(2000))
    assert exact - 0.05 - 5 * told["standard_error"] < told["value"] < exact + 5 * told["standard_error"]


def test_an_encoder_that_ignores_x_carries_no_information():
    model, data = linear_gaussian(on=0, off=5), gaussian_images(500)
    told = latent_terms(model, data)
    assert told["information"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert told["layers"]["z"]["active"] == 0


def test_units_from_draws_are_found_as_from_exact_means():
    """The same linear-Gaussian encoder through an IAF set to the identity (no shift, gates at 1): z's
    mean is now estimated from 16 draws, and the corrected activity still finds exactly the 3 units on
    (an off unit's estimate: 0 ± sqrt(2/n) / 16 = 0.002, far below 0.01)."""
    model, data = linear_gaussian(on=3, off=4, flow=True), gaussian_images(2000)
    found = latent_terms(model, data, information_images=50)["layers"]["z"]
    assert found["mean"] == "draws" and found["active"] == 3
    assert found["activity"][:3] == pytest.approx([1.0] * 3, abs=5 * math.sqrt(2 / 2000) * (1 + 1 / 16))
    assert found["activity"][3:] == pytest.approx([0.0] * 4, abs=5 * math.sqrt(2 / 2000) / 16)


def test_activity_from_draws_removes_the_draws_own_spread():
    """Means of S draws spread by A + v / S over the images; `activity` gives back A."""
    generator = torch.Generator().manual_seed(0)
    n, draws, spread, within = 20000, 4, 0.02, 1.0
    centres = torch.randn(n, 1, generator=generator) * math.sqrt(spread)
    samples = centres + torch.randn(draws, n, 1, generator=generator) * math.sqrt(within)
    corrected = activity(samples.mean(0), samples.var(0), draws).item()
    naive = activity(samples.mean(0)).item()
    assert naive > 0.2  # the draws' own spread alone, 1/4, would call the unit active
    # the estimate's standard error: about sqrt(2/n) (A + v/S) = 0.0027
    assert corrected == pytest.approx(spread, abs=5 * math.sqrt(2 / n) * (spread + within / draws))


def test_information_is_the_mean_gap():
    value, error = information(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 0.0]))
    assert value == pytest.approx(2.0) and error == pytest.approx(1 / math.sqrt(3))


def binary_images(n: int) -> DeviceSplit:
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 1, 28, 28, generator=generator) < 0.3).float()
    return DeviceSplit(x=x, y=torch.randint(0, 10, (n,), generator=generator), binary=True)


@pytest.mark.parametrize("build", [
    lambda: VAE((1, 28, 28), latent_dims=(6, 4), hidden=(32,)),
    lambda: VAE((1, 28, 28), latent_dims=(6, 4), inference="bottom-up", hidden=(32,)),
    lambda: ADGM((1, 28, 28), 10, latent_dim=5, aux_dim=4, hidden=(32,)),
    lambda: SDGM((1, 28, 28), 10, latent_dim=5, aux_dim=4, hidden=(32,)),
], ids=["top-down", "bottom-up", "adgm", "sdgm"])
def test_each_units_kl_adds_up_to_its_latents_kl(build):
    """Every unit's closed-form KL given the draws, summed, against the Monte-Carlo mean of the
    latent's KL part at the same kind of draws (`Densities.kl`), within 5 standard errors."""
    torch.manual_seed(0)
    model, data = build().eval(), binary_images(32)
    with torch.no_grad():
        noise = draw_noise(model, 1000, 32, torch.Generator().manual_seed(3), "cpu")
        posterior = model.posterior(data.x, data.y)
        shown = model.shown(data.x, data.y, posterior, noise)
        kl = model.densities(data.x, data.y, posterior, noise).kl
    checked = 0
    for latent in shown.values():
        if latent.kl_dims is None:
            continue
        per_image = kl[latent.part].mean(0)
        error = (kl[latent.part].std(0) / math.sqrt(1000)).max().item()
        closed = latent.kl_dims.sum(-1).mean(0)
        assert closed.numpy() == pytest.approx(per_image.numpy(), abs=5 * error + 1e-4)
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("build", [
    lambda: VAE((1, 28, 28), latent_dim=5, hidden=(32,)),
    lambda: VAE((1, 28, 28), latent_dim=5, posterior="iaf", flow_hidden=16, hidden=(32,)),
    lambda: VAE((1, 28, 28), latent_dims=(6, 4), hidden=(32,)),
    lambda: VAE((1, 28, 28), latent_dims=(6, 4), inference="bottom-up", hidden=(32,)),
    lambda: ADGM((1, 28, 28), 10, latent_dim=5, aux_dim=4, hidden=(32,)),
    lambda: ADGM((1, 28, 28), 10, latent_dim=5, aux_dim=4, hidden=(32,), posterior="iaf", flow_hidden=16),
    lambda: SDGM((1, 28, 28), 10, latent_dim=5, aux_dim=4, hidden=(32,)),
    lambda: M2((1, 28, 28), 10, latent_dim=5, hidden=(32,)),
], ids=["gaussian", "iaf", "top-down", "bottom-up", "adgm", "adgm-iaf", "sdgm", "m2"])
def test_pair_densities_are_q_of_one_images_latents_under_another_images_posterior(build):
    """log_posterior_pairs [n, m] against log q(v_i | x_j) computed pair by pair from `densities`: the
    noise that gives v_i under x_j's posterior (the draw inverted), then Σ (log q - log p) + Σ log p at it."""
    torch.manual_seed(0)
    model, data = build().eval(), binary_images(7)
    own, other = DeviceSplit(data.x[:4], data.y[:4], True), DeviceSplit(data.x[4:], data.y[4:], True)
    with torch.no_grad():
        noise = draw_noise(model, 1, 4, torch.Generator().manual_seed(3), "cpu")
        shown = model.shown(own.x, own.y, model.posterior(own.x, own.y), noise)
        values = {name: latent.draws[0] for name, latent in shown.items()}
        posterior = model.posterior(other.x, other.y)
        pairs = model.log_posterior_pairs(posterior, values)
        assert pairs.shape == (4, 3)
        for j in range(3):
            image = DeviceSplit(other.x[j : j + 1].expand(4, -1, -1, -1), other.y[j : j + 1].expand(4), True)
            mine = tuple(part[j : j + 1].expand(4, *part.shape[1:]) for part in posterior)
            direct = log_q_at_draw(model, image, mine, noise_giving(model, mine, values)[None])
            assert pairs[:, j].numpy() == pytest.approx(direct.numpy(), abs=1e-3)


def noise_giving(model, posterior, values):
    """The base noise [batch, ...] whose draw under `posterior` is `values`: the family's draw inverted."""
    if isinstance(model, ADGM):
        mu_a, sigma_a, z_head = posterior[:3]
        outputs = model.z_encoder.finish(z_head, values["a"])
        d = model.latent_dim
        mu_z, sigma_z = outputs[..., :d], torch.exp(0.5 * outputs[..., d : 2 * d])
        start = values["z"] if model.flow is None else model.flow.inverse(values["z"], outputs[..., 2 * d :])
        return torch.cat([(values["a"] - mu_a) / sigma_a, (start - mu_z) / sigma_z], dim=-1)
    return model.latents.noise_of(posterior, tuple(values[name] for name in model.latents.layer_names))


def log_q_at_draw(model, data, posterior, noise):
    """log q(latents | x) at one draw, noise [1, batch, ...], from `densities`: Σ (log q - log p) + Σ log p."""
    densities = model.densities(data.x, data.y, posterior, noise)
    shown = model.shown(data.x, data.y, posterior, noise)
    if isinstance(model, ADGM):  # log p(z) + log p(a | x, y, z)
        z, a = shown["z"].draws, shown["a"].draws
        loc, scale = model._aux_prior(None, data.y, z, *posterior[3:])
        log_p = model._log_prior(z) + gaussian_log_density_at(a, loc, scale)
    else:  # log p(z_L) + Σ log p(z_l | z_(l+1))
        values = [shown[name].draws for name in model.latents.layer_names]
        log_p = model.top_prior().log_prob(values[-1])
        for l in range(len(values) - 1):
            log_p = log_p + gaussian_log_density_at(values[l], *softplus_loc_scale(model.latents.down[l](values[l + 1])))
    return (sum(densities.kl.values()) + log_p)[0]
