"""The latents beyond one Gaussian (`vaelab.models.flows`, `vaelab.models.latents`): the IAF posterior,
the RealNVP prior and hierarchies of Gaussian layers, as parts of the VAE, CVAE and M2
(`--posterior iaf`, `--prior flow`, `--latent-dims 64,32 --inference top-down|bottom-up`).

Every flow density here is checked without the flow's own log-determinant: against the log |det|
of the Jacobian autograd computes of the flow's map alone, against the change-of-variables density
of the whole draw ε -> z, and (for the prior) against 1 by integrating over a 2-D grid. A
hierarchy's log-weights are checked against its densities written out layer by layer, and its
closed-form ELBO against the Monte-Carlo mean of those. Runs end to end: test_latents_end_to_end.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.config import make_config
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.flows import IAFStep, InverseAutoregressiveFlow, RealNVP, made_masks
from vaelab.inference.bounds import draw_noise, elbo, iw_bound, log_weight


def _scramble(module: torch.nn.Module, scale: float, seed: int) -> None:
    """Random parameters of a sizeable spread, so that no step is near the identity it starts at."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=g, dtype=parameter.dtype))


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_made_output_depends_only_on_the_inputs_before_it(dim, reverse):
    """Through the product of the masks, output j (shift and gate) reaches input i only if i comes
    before j in the step's order: the Jacobian of the step is triangular, its diagonal σ."""
    masks = made_masks(dim, 7, 2, reverse)
    reach = masks[2] @ masks[1] @ masks[0]  # [2 dim, dim]: paths from input i to output j
    order = torch.arange(dim).flip(0) if reverse else torch.arange(dim)
    rank = torch.empty(dim, dtype=torch.long)
    rank[order] = torch.arange(dim)  # position of each coordinate in the order
    allowed = rank[:, None] > rank[None, :]  # output j may see input i
    for half in (reach[:dim], reach[dim:]):
        assert bool(((half > 0) <= allowed).all())
        if dim > 1:
            assert bool((half[allowed] > 0).all())  # and it does see every one of them


@pytest.mark.parametrize("reverse", [False, True])
def test_an_iaf_steps_log_determinant_is_autograds(reverse):
    torch.manual_seed(0)
    step = IAFStep(4, 16, 3, reverse).double()
    _scramble(step, 0.7, 1)
    context = torch.randn(3, dtype=torch.float64)
    for _ in range(5):
        z = torch.randn(4, dtype=torch.float64) * 2
        out, log_det = step(z, context)
        jacobian = torch.autograd.functional.jacobian(lambda v: step(v, context)[0], z)
        ordered = jacobian.flip(0, 1) if reverse else jacobian
        assert torch.allclose(ordered, ordered.tril(), atol=1e-12)  # triangular
        assert math.isclose(log_det.item(), torch.linalg.slogdet(jacobian).logabsdet.item(), abs_tol=1e-10)


def test_the_flows_log_determinant_is_autograds_for_a_batch_of_draws():
    torch.manual_seed(0)
    flow = InverseAutoregressiveFlow(3, 3, 12, 5).double()
    _scramble(flow, 0.6, 2)
    z = torch.randn(4, 2, 3, dtype=torch.float64)  # [samples, batch, d]
    context = torch.randn(2, 5, dtype=torch.float64)  # [batch, c]: broadcast over the samples
    out, log_det = flow(z, context)
    assert out.shape == z.shape and log_det.shape == (4, 2)
    for s in range(4):
        for b in range(2):
            jacobian = torch.autograd.functional.jacobian(lambda v: flow(v, context[b])[0], z[s, b])
            assert math.isclose(log_det[s, b].item(), torch.linalg.slogdet(jacobian).logabsdet.item(), abs_tol=1e-10)


@pytest.mark.parametrize("family", ["vae", "cvae", "m2"])
def test_the_iaf_posteriors_log_q_is_the_change_of_variables_density_of_the_draw(family):
    """log q(z | x[, y]) as the family's one forward pass gives it (its KL plus log p(z)) equals
    log N(ε; 0, I) - log |det ∂z/∂ε| of the whole map from base noise to z, by autograd; and x is
    decoded from that z, and the code is the map at ε = 0."""
    torch.manual_seed(0)
    model = build_model(family, (1, 3, 3), 4, latent_dim=3, hidden=(8,), posterior="iaf", flow_steps=3,
                        flow_hidden=10).double()
    _scramble(model, 0.5, 3)
    x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64))
    y = torch.tensor([1, 3])
    posterior = model.posterior(x, y)
    assert [p.shape for p in posterior] == [(2, 3), (2, 3), (2, 10)]
    noise = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        densities = model.densities(x, y, posterior, noise)
        closed = model.densities(x, y, posterior, noise, closed_form=True)

    def draw(eps, b):  # the map ε -> z for image b alone
        loc, scale, context = (p[b] for p in posterior)
        return model.latents.flow(loc + scale * eps, context)[0]

    prior = model.prior()
    for s in range(5):
        for b in range(2):
            z = draw(noise[s, b], b)
            jacobian = torch.autograd.functional.jacobian(lambda e: draw(e, b), noise[s, b])
            log_q = (-0.5 * noise[s, b].pow(2) - 0.5 * math.log(2 * math.pi)).sum() - torch.linalg.slogdet(jacobian).logabsdet
            got = densities.kl["kl"][s, b] + prior.log_prob(z)
            assert math.isclose(got.item(), log_q.item(), abs_tol=1e-9)
            expected_px = model.decoder(z, y[b] if family != "vae" else None).log_prob(x[b])
            assert math.isclose(densities.log_px[s, b].item(), expected_px.item(), abs_tol=1e-9)
    torch.testing.assert_close(closed.kl["kl"], densities.kl["kl"])  # a flow has no closed form: the draw's
    with torch.no_grad():
        torch.testing.assert_close(model.code(x, y), torch.stack([draw(torch.zeros(3, dtype=torch.float64), b)
                                                                  for b in range(2)]))


def _spread_prior(seed: int) -> RealNVP:
    flow = RealNVP(2, 4, 16).double()
    _scramble(flow, 0.5, seed)
    return flow


def test_the_flow_priors_density_integrates_to_one_on_a_grid():
    """p(z) of a 2-D RealNVP with spread parameters, summed over an 801 x 801 grid on [-12, 12]^2
    (cell 0.03): 1 within 1e-4, and visibly not N(0, I) (its mean and covariance differ)."""
    flow = _spread_prior(4)
    side = torch.linspace(-12, 12, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(side, side, indexing="ij"), dim=-1)  # [1201, 1201, 2]
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    cell = (side[1] - side[0]).item() ** 2
    total = density.sum().item() * cell
    assert math.isclose(total, 1.0, abs_tol=1e-4), total
    mean = (density[..., None] * grid).sum((0, 1)) * cell
    second = (density[..., None, None] * grid[..., :, None] * grid[..., None, :]).sum((0, 1)) * cell
    covariance = second - mean[:, None] * mean[None, :]
    assert (mean.abs().max() > 0.05) or ((covariance - torch.eye(2, dtype=torch.float64)).abs().max() > 0.1)


def test_the_flow_prior_draws_what_its_density_says():
    """Its draws, normalised again, give back the base points; log p at a draw equals log N(u) -
    log |det ∂z/∂u| by autograd; and draws with one generator repeat."""
    flow = _spread_prior(5)
    prior = flow.distribution()
    u = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = prior.draw((6,), torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, flow.generate(u))
    torch.testing.assert_close(prior.draw((6,), torch.Generator().manual_seed(0)), z, rtol=0, atol=0)
    for i in range(6):
        jacobian = torch.autograd.functional.jacobian(flow.generate, u[i])
        expected = (-0.5 * u[i].pow(2) - 0.5 * math.log(2 * math.pi)).sum() - torch.linalg.slogdet(jacobian).logabsdet
        assert math.isclose(prior.log_prob(z[i]).item(), expected.item(), abs_tol=1e-9)
    back = z
    for layer in reversed(flow.layers):
        back, _ = layer.normalise(back)
    torch.testing.assert_close(back, u)


def test_a_new_flow_prior_is_the_standard_gaussian():
    flow = RealNVP(5, 3, 8)
    z = torch.randn(7, 5)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(flow.log_prob(z), expected)


@pytest.mark.parametrize("family", ["vae", "cvae", "m2"])
@pytest.mark.parametrize("posterior, prior", [("iaf", "standard"), ("gaussian", "flow"), ("iaf", "vamp"), ("iaf", "flow")])
def test_the_bounds_of_every_family_with_a_flow_are_their_log_weights(family, posterior, prior):
    """With a flow the KL is the draw's: the ELBO is the mean log-weight and IW(k) its logsumexp,
    every draw finite and differentiable, and the prior is the standard Gaussian's, the VampPrior's
    or the RealNVP's."""
    torch.manual_seed(0)
    model = build_model(family, (1, 4, 4), 3, latent_dim=4, hidden=(8,), posterior=posterior, prior=prior,
                        pseudo_inputs=5, flow_hidden=12, flow_steps=2, prior_flow_steps=2).double()
    _scramble(model, 0.3, 6)
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5, dtype=torch.float64))
    y = torch.tensor([0, 2, 1])
    noise = draw_noise(model, 4, 3, torch.Generator().manual_seed(1), "cpu", torch.float64)
    weights = log_weight(model.densities(x, y, model.posterior(x, y), noise))
    terms = elbo(model, x, y, noise)
    torch.testing.assert_close(terms.bound, weights.mean(0))
    torch.testing.assert_close(iw_bound(model, x, y, noise).bound, weights.logsumexp(0) - math.log(4))
    terms.maximised.sum().backward()
    bound_parameters = [p for name, p in model.named_parameters() if not name.startswith("classifier_net")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bound_parameters)
    if posterior == "iaf":
        assert model.latents.flow.steps[0].first.weight.grad.abs().sum() > 0
    if prior == "flow":
        assert model.prior_flow.layers[0].net[-1].weight.grad.abs().sum() > 0
    words = " ".join(model.equations())
    assert ("IAF steps" in words) == (posterior == "iaf") and ("RealNVP" in words) == (prior == "flow")


def test_flow_settings_belong_to_their_choice():
    assert make_config({"model": "vae", "posterior": "iaf", "flow_steps": 4}).flow_steps == 4
    with pytest.raises(VaelabError, match="flow_steps is a setting of posterior iaf"):
        make_config({"model": "vae", "flow_steps": 4})
    with pytest.raises(VaelabError, match="prior_flow_steps is a setting of prior flow"):
        make_config({"model": "cvae", "prior": "vamp", "prior_flow_steps": 2})
    with pytest.raises(VaelabError, match="prior flow .* a top layer of 2 or more"):
        make_config({"model": "vae", "prior": "flow", "latent_dim": 1})
    with pytest.raises(VaelabError, match="posterior .maf. is not allowed"):
        make_config({"model": "vae", "posterior": "maf"})


# ---- hierarchies: the bound against the densities written out layer by layer ----

def _normal(loc, scale):
    return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)


def _written_out_log_weight(model, x, y, noise):
    """log p(x | z1) + log p(z1 | z2) + ... + log p(zL) - log q(z1, ..., zL | x) for each draw, every
    density a torch.distributions Normal built here from the family's networks' raw outputs."""
    return _written_out(model, x, y, noise)[0]


def _written_out(model, x, y, noise):
    """(`_written_out_log_weight`, the layers [z1, ..., zL] of each draw)."""
    from vaelab.models.latents import softplus_loc_scale

    latents = model.latents
    dims, count = latents.dims, len(latents.dims)
    eps = list(noise.split(dims, dim=-1))
    raw = model.encoder_net(x, y) if model.given != "x" else model.encoder_net(x)
    mu, log_var = raw.chunk(2, dim=-1)
    z, log_q = [None] * count, 0
    if latents.inference == "bottom-up":
        loc, scale = mu, (0.5 * log_var).exp()
        for l in range(count):
            if l:
                loc, scale = softplus_loc_scale(latents.up[l - 1](z[l - 1]))
            z[l] = loc + scale * eps[l]
            log_q = log_q + _normal(loc, scale).log_prob(z[l])
    else:
        hats, h = [(mu, (0.5 * log_var).exp())], raw
        for up in latents.up:
            h = up(h)
            hats.append(softplus_loc_scale(h))
        z[-1] = hats[-1][0] + hats[-1][1] * eps[-1]
        log_q = _normal(*hats[-1]).log_prob(z[-1])
        for l in reversed(range(count - 1)):
            p_loc, p_scale = softplus_loc_scale(latents.down[l](z[l + 1]))
            (m, s) = hats[l]
            variance = 1 / (1 / s**2 + 1 / p_scale**2)
            loc = variance * (m / s**2 + p_loc / p_scale**2)
            z[l] = loc + variance.sqrt() * eps[l]
            log_q = log_q + _normal(loc, variance.sqrt()).log_prob(z[l])
    log_p = _normal(torch.zeros_like(z[-1]), torch.ones_like(z[-1])).log_prob(z[-1])
    for l in range(count - 1):
        log_p = log_p + _normal(*softplus_loc_scale(latents.down[l](z[l + 1]))).log_prob(z[l])
    return model.decoder(z[0], y).log_prob(x) + log_p - log_q, z


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
@pytest.mark.parametrize("dims", [(5, 3), (6, 4, 2)])
def test_a_hierarchy_finds_the_noise_of_given_latents(inference, dims):
    """noise_of inverts the draw: from layers drawn from q (written out here), it gives back their noise."""
    torch.manual_seed(0)
    model = build_model("cvae", (1, 3, 3), 3, latent_dims=dims, inference=inference, hidden=(8,)).double()
    _scramble(model, 0.4, 9)
    x = torch.bernoulli(torch.full((4, 1, 3, 3), 0.5, dtype=torch.float64))
    y = torch.tensor([2, 0, 1, 1])
    noise = draw_noise(model, 1, 4, torch.Generator().manual_seed(4), "cpu", torch.float64)
    with torch.no_grad():
        _, layers = _written_out(model, x, y, noise)
        found = model.latents.noise_of(model.posterior(x, y), tuple(layer[0] for layer in layers))
    torch.testing.assert_close(found, noise[0], rtol=0, atol=1e-9)


def test_the_iaf_inverts_its_draw_and_a_one_layer_latent_finds_its_noise():
    flow = InverseAutoregressiveFlow(5, 3, 16, 4).double()
    _scramble(flow, 0.5, 10)
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    context = torch.randn(7, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(flow.inverse(flow(z0, context)[0], context), z0, rtol=0, atol=1e-9)
    model = build_model("vae", (1, 3, 3), 0, latent_dim=5, posterior="iaf", flow_hidden=16, hidden=(8,)).double()
    _scramble(model, 0.4, 11)
    x = torch.bernoulli(torch.full((3, 1, 3, 3), 0.5, dtype=torch.float64))
    noise = draw_noise(model, 1, 3, g, "cpu", torch.float64)
    with torch.no_grad():
        posterior = model.posterior(x)
        z, _ = model.latents.draw(posterior, noise, model.top_prior(), False)
        torch.testing.assert_close(model.latents.noise_of(posterior, (z[0],)), noise[0], rtol=0, atol=1e-8)


@pytest.mark.parametrize("family", ["vae", "cvae"])
@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
@pytest.mark.parametrize("dims", [(5, 3), (6, 4, 2)])
def test_a_hierarchys_bound_is_the_monte_carlo_sum_written_out(family, inference, dims):
    """Each draw's log-weight equals the densities written out layer by layer; the ELBO with its
    closed-form KLs (top-down: every layer's given the one above; bottom-up: the top's) equals the
    mean of those log-weights over 4,000 draws within 4 standard errors; and the parts are one KL
    per layer, kl_z1 ... kl_zL, with bound = recon - their sum."""
    torch.manual_seed(0)
    model = build_model(family, (1, 3, 3), 3, latent_dims=dims, inference=inference, hidden=(8,)).double()
    _scramble(model, 0.4, 7)
    x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64))
    y = torch.tensor([2, 0])
    noise = draw_noise(model, 4000, 2, torch.Generator().manual_seed(2), "cpu", torch.float64)
    with torch.no_grad():
        weights = log_weight(model.densities(x, y, model.posterior(x, y), noise))
        written = _written_out_log_weight(model, x, y, noise)
        torch.testing.assert_close(weights, written, rtol=0, atol=1e-9)
        terms = elbo(model, x, y, noise)
    assert list(terms.parts) == ["recon", *(f"kl_z{l + 1}" for l in range(len(dims)))]
    torch.testing.assert_close(terms.bound, terms.parts["recon"] - sum(v for k, v in terms.parts.items() if k != "recon"))
    error = written.std(0) / math.sqrt(written.shape[0])
    assert bool(((terms.bound - written.mean(0)).abs() < 4 * error).all()), (terms.bound, written.mean(0), error)
    assert model.noise_shape() == (sum(dims),) and model.code_dim == dims[0]


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_a_hierarchys_draws_from_its_prior_go_down_its_layers(inference):
    """sample_codes: z_L ~ N(0, I), then z_l ~ p(z_l | z_(l+1)), all with the one generator; the code
    of an image is z_1 with every noise at 0; the VampPrior's components are the top layer's Gaussians."""
    from vaelab.models.latents import softplus_loc_scale

    torch.manual_seed(0)
    model = build_model("vae", (1, 3, 3), 0, latent_dims=(4, 3, 2), inference=inference, hidden=(8,)).double()
    _scramble(model, 0.4, 8)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        expected = torch.randn(5, 2, generator=g, dtype=torch.float64)
        for down in reversed(model.latents.down):
            loc, scale = softplus_loc_scale(down(expected))
            expected = loc + scale * torch.randn(loc.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(model.sample_codes(5, torch.Generator().manual_seed(3)), expected, rtol=0, atol=0)
        x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64))
        zero = torch.zeros(1, 2, 9, dtype=torch.float64)
        at_zero, _ = model.latents.draw(model.posterior(x), zero, model.top_prior(), False)
        torch.testing.assert_close(model.code(x), at_zero[0])
    assert "hierarchy of 3 Gaussian layers" in model.prior().description
    vamp = build_model("vae", (1, 3, 3), 0, latent_dims=(4, 2), inference=inference, hidden=(8,), prior="vamp",
                       pseudo_inputs=3)
    with torch.no_grad():
        components = vamp.top_prior()
        assert components.loc.shape == (3, 2)
        torch.testing.assert_close(components.loc, vamp.latents.top_gaussian(vamp.posterior(*vamp.pseudo_inputs()))[0])


def test_hierarchy_settings_are_checked():
    config = make_config({"model": "cvae", "latent_dims": "64,32", "inference": "bottom-up"})
    assert config.latent_dims == (64, 32) and config.family_settings()["latent_dims"] == (64, 32)
    with pytest.raises(VaelabError, match="latent_dims gives every layer's size"):
        make_config({"model": "vae", "latent_dims": (64, 32), "latent_dim": 20})
    with pytest.raises(VaelabError, match="posterior iaf is for one stochastic layer"):
        make_config({"model": "vae", "latent_dims": (64, 32), "posterior": "iaf"})
    with pytest.raises(VaelabError, match="inference is how a hierarchy is inferred"):
        make_config({"model": "vae", "inference": "bottom-up"})
    with pytest.raises(VaelabError, match="model adgm does not take latent_dims"):
        make_config({"model": "adgm", "latent_dims": (64, 32)})


def test_the_adgm_takes_the_iaf_and_the_flow_prior_with_log_q_the_change_of_variables():
    """The ADGM's z: log q(z | a, y, x) from its one pass (its KL plus log p(z) of the RealNVP)
    equals log N(ε_z; 0, I) - log |det ∂z/∂ε_z| by autograd, given its draw of a; and with the label
    summed out, every class's term is the draw's too (no closed form)."""
    torch.manual_seed(0)
    model = build_model("adgm", (1, 3, 3), 3, latent_dim=3, aux_dim=2, hidden=(8,), posterior="iaf",
                        flow_steps=2, flow_hidden=6, prior="flow", prior_flow_steps=2).double()
    _scramble(model, 0.4, 9)
    x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64))
    y = torch.tensor([2, 0])
    posterior = model.posterior(x, y)
    noise = torch.randn(3, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        densities = model.densities(x, y, posterior, noise)
    mu_a, sigma_a, z_head, _ = posterior
    for s in range(3):
        for b in range(2):
            a = mu_a[b] + sigma_a[b] * noise[s, b, :2]
            outputs = model.z_encoder.finish(z_head[b], a)

            def draw(eps):
                mu, log_var = outputs[:3], outputs[3:6]
                return model.flow(mu + (0.5 * log_var).exp() * eps, outputs[6:])[0]

            eps = noise[s, b, 2:]
            jacobian = torch.autograd.functional.jacobian(draw, eps)
            log_q = (-0.5 * eps.pow(2) - 0.5 * math.log(2 * math.pi)).sum() - torch.linalg.slogdet(jacobian).logabsdet
            got = densities.kl["kl"][s, b] + model.prior_flow.log_prob(draw(eps))
            assert math.isclose(got.item(), log_q.item(), abs_tol=1e-9)
    assert "RealNVP" in " ".join(model.equations()) and "IAF steps" in " ".join(model.equations())
    with pytest.raises(VaelabError, match="model adgm takes prior standard or flow, not vamp"):
        make_config({"model": "adgm", "prior": "vamp"})
