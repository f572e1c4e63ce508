"""AIS and HMC (`vaelab.inference.annealing`) on models whose answers are known exactly.

The linear-Gaussian model z ~ N(0, I_d), x | z ~ N(W z + b, σ² I_D) has log p(x) = log N(x; b,
W Wᵀ + σ² I) and a Gaussian posterior; its q here is a Gaussian off the posterior on purpose: too
wide (`model`, where HMC's step sizes must come down) or too narrow and further off (`poor_model`,
whose importance-sampling estimate is nats short, so AIS has a real gap to close). Everything runs in float64, on one small batch, in seconds.
"""

import math

import pytest
import torch

from vaelab.inference import annealing
from vaelab.models import Densities

D, d = 6, 3  # data and latent sizes


class LinearGaussian:
    """The members of `Model` that AIS reads, for the linear-Gaussian model with q(z | x) = N(A x + c,
    diag s²): a q whose mean and scales are off the true posterior's."""

    def __init__(self, generator, shrink: float = 0.6, widen: float = 1.8):
        g = dict(generator=generator, dtype=torch.float64)
        self.W = torch.randn(D, d, **g)
        self.b = torch.randn(D, **g)
        self.sigma = 0.7
        covariance = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + self.W.T @ self.W / self.sigma**2)
        self.post_A = covariance @ self.W.T / self.sigma**2  # the true posterior's mean map
        self.A = self.post_A * shrink  # q's mean map: shrunk, so q's mean is off
        self.s = covariance.diagonal().sqrt() * widen  # q's scales: too wide or too narrow

    def noise_shape(self, labelled=True):
        return (d,)

    def parameters(self):
        return iter(())

    def posterior(self, x, y=None):
        return (x - self.b) @ self.A.T, self.s.expand(x.shape[0], d)

    def densities(self, x, y, posterior, noise, closed_form=False):
        loc, scale = posterior
        z = loc + scale * noise
        normal = torch.distributions.Normal
        log_px = normal(z @ self.W.T + self.b, self.sigma).log_prob(x).sum(-1)
        log_q = normal(0.0, 1.0).log_prob(noise).sum(-1) - scale.log().sum(-1)
        return Densities(log_px, {"kl": log_q - normal(0.0, 1.0).log_prob(z).sum(-1)})

    def exact_log_likelihood(self, x):
        covariance = self.W @ self.W.T + self.sigma**2 * torch.eye(D, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, covariance).log_prob(x)

    def simulate(self, count, generator):
        """Images drawn from the model and the noise that q's draw maps to their latents."""
        z = torch.randn(count, d, generator=generator, dtype=torch.float64)
        x = z @ self.W.T + self.b + self.sigma * torch.randn(count, D, generator=generator, dtype=torch.float64)
        loc, scale = self.posterior(x)
        return x, (z - loc) / scale


@pytest.fixture(scope="module")
def model():
    return LinearGaussian(torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def poor_model():
    """q too narrow and its mean far off: importance sampling with 128 draws is about 2 nats short."""
    return LinearGaussian(torch.Generator().manual_seed(3), shrink=0.3, widen=0.6)


@pytest.fixture(scope="module")
def images(model):
    return model.simulate(8, torch.Generator().manual_seed(4))[0]


def test_sigmoid_schedule_runs_from_0_to_1_in_increasing_steps_that_are_smallest_at_the_ends():
    betas = annealing.sigmoid_schedule(100)
    steps = betas.diff()
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 101
    assert (steps > 0).all()
    assert steps[0] < steps[50] and steps[-1] < steps[50]
    assert annealing.sigmoid_schedule(1).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        annealing.sigmoid_schedule(0)


def test_hmc_on_a_gaussian_target_matches_its_mean_and_covariance():
    # π_1(ε) = N(ε) w(ε) with log w = log N(ε; m, C) - log N(ε; 0, I): the target is N(m, C) itself
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    root = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [-0.3, 0.2, 0.8]], dtype=torch.float64)
    target = torch.distributions.MultivariateNormal(m, scale_tril=root)
    standard = torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0)

    def log_w(eps):
        return target.log_prob(eps) - standard.log_prob(eps).sum(-1)

    chains = 2000
    eps = torch.randn(chains, 1, 3, generator=g, dtype=torch.float64)
    state = annealing.start_chains(log_w, eps)
    for _ in range(60):
        state, probability = annealing.hmc_step(log_w, state, 1.0, 5, torch.tensor([0.3], dtype=torch.float64), g)
    draws = state.eps[:, 0]
    error = 5 / math.sqrt(chains)  # 5 standard errors of a unit-variance mean
    assert torch.allclose(draws.mean(0), m, atol=error)
    assert torch.allclose(torch.cov(draws.T), root @ root.T, atol=0.12)
    assert 0.3 < probability.mean() < 1.0


def test_the_pilot_tunes_the_step_sizes_towards_the_target_acceptance(model, images):
    log_w = annealing.model_log_weights(model, images, None)
    betas = annealing.sigmoid_schedule(400)
    pilot = torch.randn(1, len(images), d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    too_small = annealing.tune_step_sizes(log_w, pilot, betas, 5, 0.01, torch.Generator().manual_seed(3))
    too_large = annealing.tune_step_sizes(log_w, pilot, betas, 5, 0.9, torch.Generator().manual_seed(3))
    assert too_small.shape == (399, len(images))
    assert (too_small[-1] > 10 * too_small[0]).all() and (too_large[-1] < too_large[0]).all()
    # from either side the pilot reaches the same step sizes, within the factor a single chain's noise allows ...
    assert ((too_small[-1] / too_large[-1]).log().abs() < math.log(3)).all()
    # ... and chains on them accept about as often as the target says
    start = torch.randn(200, len(images), d, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    annealed = annealing.anneal(log_w, start, betas, 5, too_small, torch.Generator().manual_seed(5))
    late = annealing.anneal(log_w, annealed.eps, torch.ones(41, dtype=torch.float64), 5, too_small[-40:],
                            torch.Generator().manual_seed(6))  # 40 more moves on the posterior itself
    assert 0.45 < late.acceptance.mean() < 0.85  # the target is 0.65


def test_hmc_leaves_its_target_invariant_from_the_start():
    # started from exact draws of N(m, I), one transition changes neither mean nor variance
    g = torch.Generator().manual_seed(1)
    m = torch.tensor([0.5, -1.0], dtype=torch.float64)

    def log_w(eps):
        return -0.5 * (eps - m).square().sum(-1) + 0.5 * eps.square().sum(-1)

    eps = m + torch.randn(20000, 1, 2, generator=g, dtype=torch.float64)
    state, _ = annealing.hmc_step(log_w, annealing.start_chains(log_w, eps), 1.0, 3,
                                  torch.tensor([0.9], dtype=torch.float64), g)
    moved = state.eps[:, 0]
    assert (moved != eps[:, 0]).any(-1).float().mean() > 0.5  # most chains moved
    assert torch.allclose(moved.mean(0), m, atol=0.04)
    assert torch.allclose(moved.var(0), torch.ones(2, dtype=torch.float64), atol=0.05)


def test_ais_converges_to_the_exact_log_likelihood_as_the_steps_grow(poor_model, images):
    exact = poor_model.exact_log_likelihood(images)
    gaps, errors = {}, {}
    for steps in (1, 3, 300):  # one step is importance sampling with q as the proposal
        estimate = annealing.log_likelihood_ais(poor_model, images, None, annealing.AisSettings(steps, 5, 128, 0.3),
                                                generator=torch.Generator().manual_seed(steps))
        gaps[steps] = (exact - estimate.log_likelihood).mean().item()
        errors[steps] = estimate.standard_error.square().mean().div(len(images)).sqrt().item()
        if steps > 1:
            assert (estimate.acceptance > 0).all()
    assert gaps[1] > 1 and gaps[1] > 4 * errors[1]  # importance sampling's gap is real
    assert gaps[3] < gaps[1] - 4 * math.hypot(errors[1], errors[3])  # and three bridges close much of it
    assert abs(gaps[300]) < 4 * errors[300] < 0.1  # nats per image


def test_the_ais_weight_is_unbiased_for_p_of_x(model, images):
    # E[p_AIS / p(x)] = 1 for a single chain, whatever the steps: the tuned step sizes are fixed in
    # advance (a chain that adapted its own would sit at 1.06 here)
    x = images.repeat(256, 1)
    exact = model.exact_log_likelihood(x)
    for steps in (10, 100):
        estimate = annealing.log_likelihood_ais(model, x, None, annealing.AisSettings(steps, 5, 1, 0.3),
                                                generator=torch.Generator().manual_seed(steps))
        ratio = (estimate.log_likelihood - exact).exp()
        assert abs(ratio.mean() - 1) < 4 * ratio.std() / math.sqrt(len(x))


def test_ais_standard_error_shrinks_as_the_chains_grow_and_matches_the_spread_of_repeats(model, images):
    errors = {}
    for chains in (16, 256):
        estimate = annealing.log_likelihood_ais(model, images, None, annealing.AisSettings(5, 2, chains, 0.3),
                                                generator=torch.Generator().manual_seed(chains))
        errors[chains] = estimate.standard_error.mean().item()
    # 16 times the chains: a quarter of the error (the estimate of the spread itself is noisy)
    assert errors[256] < 0.5 * errors[16]
    # the error a run reports is the spread its estimate has over independent runs
    repeats = torch.stack([annealing.log_likelihood_ais(model, images, None, annealing.AisSettings(5, 2, 16, 0.3),
                                                        generator=torch.Generator().manual_seed(100 + r)).log_likelihood
                           for r in range(30)])
    spread = repeats.std(0).mean().item()
    assert 0.5 * spread < errors[16] < 2 * spread, (errors[16], spread)


def test_the_bidirectional_sandwich_contains_the_exact_value_and_narrows_with_the_steps(model):
    x, posterior_noise = model.simulate(32, torch.Generator().manual_seed(5))
    exact = model.exact_log_likelihood(x)
    widths = {}
    for steps in (3, 200):
        sandwich = annealing.bidirectional(model, x, None, posterior_noise, annealing.AisSettings(steps, 5, 4, 0.3),
                                           torch.Generator().manual_seed(steps))
        for bound, side in ((sandwich.lower - exact, -1), (sandwich.upper - exact, 1)):
            # each bound on its side of the exact value, up to 3 standard errors over the images
            assert side * bound.mean() >= -3 * bound.std() / math.sqrt(len(x)), (steps, side, bound.mean())
        widths[steps] = (sandwich.upper - sandwich.lower).mean().item()
        assert 0 < sandwich.forward_acceptance.mean() <= 1 and 0 < sandwich.reverse_acceptance.mean() <= 1
    assert widths[3] > 0.1 and widths[200] < 0.2 * widths[3]


@pytest.mark.parametrize("family", ["vae", "cvae"])
@pytest.mark.parametrize("steps", [1, 4])
def test_the_evaluation_takes_any_number_of_steps_and_bdmc_its_own_settings(family, steps):
    """eval.json's "ais" and "bdmc" from a small model: one step (importance sampling, no HMC move)
    as well as several; BDMC runs on the settings it is given."""
    from vaelab.runtime.devices import DeviceSplit
    from vaelab.inference.evaluation import ais_terms, bdmc_terms
    from vaelab.models import build_model

    torch.manual_seed(0)
    model = build_model(family, (1, 3, 3), 3 if family == "cvae" else 0, latent_dim=2, hidden=(8,))
    g = torch.Generator().manual_seed(1)
    data = DeviceSplit(torch.bernoulli(torch.full((5, 1, 3, 3), 0.5), generator=g),
                       torch.tensor([0, 1, 2, 0, 1]), True)
    settings = annealing.AisSettings(steps, 2, 3, 0.2)
    ais = ais_terms(model, data, settings, images=4, iw_samples=6)
    assert ais["images"] == 4 and ais["steps"] == steps and math.isfinite(ais["log_likelihood"])
    assert math.isclose(ais["gap"], ais["log_likelihood"] - ais["log_likelihood_is"], abs_tol=1e-9)
    assert len(ais.get("step_sizes", [])) == (10 if steps > 1 else 0)
    assert (ais["acceptance"] > 0) == (steps > 1)
    bdmc = bdmc_terms(model, 3, settings)
    assert (bdmc["images"], bdmc["steps"], bdmc["chains"], bdmc["leapfrog"]) == (3, steps, 3, 2)
    assert math.isclose(bdmc["width"], bdmc["upper"] - bdmc["lower"])
    assert bdmc["width"] > 0 or steps == 1  # one step on 3 images: the two bounds' noise can cross


def test_the_cpu_share_is_looked_at_before_every_batch_of_chains_too():
    """evaluate_model calls between_batches before each IS batch, each AIS batch and each BDMC batch
    (where `vaelab evaluate` looks at the machine), not only while it importance-samples."""
    from vaelab.inference import evaluation
    from vaelab.runtime.devices import DeviceSplit
    from vaelab.models import build_model

    torch.manual_seed(0)
    model = build_model("vae", (1, 3, 3), 0, latent_dim=2, hidden=(8,))
    data = DeviceSplit(torch.bernoulli(torch.full((6, 1, 3, 3), 0.5), generator=torch.Generator().manual_seed(1)),
                       torch.zeros(6, dtype=torch.int64), True)
    settings = annealing.AisSettings(2, 1, 2048, 0.2)  # 4096 rows per batch: two images per batch of chains
    calls = []
    evaluation.evaluate_model(model, data, iw_samples=2, batch_size=3, compile="off", ais=settings, bdmc=3,
                            between_batches=lambda: calls.append(1))
    assert len(calls) == 2 + 3 + 2  # IS: 6 images by 3; AIS: by 2; BDMC: 3 images by 2
