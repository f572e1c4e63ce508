"""The estimators against exact values: analytic KL vs Monte Carlo, and a linear-Gaussian model
whose log p(x) and posterior are known in closed form, so the IS estimate can be checked exactly."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from vaelab import objectives


class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I_d), p(x | z, y) = N(W z + b_y, s^2 I); q is the exact posterior or a shifted one.

    Declares only prior/encoder/decoder (and class_log_prior), like any vaelab model.
    """

    def __init__(self, data_dim=5, latent_dim=3, num_classes=0, noise=0.5, posterior_shift=0.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=g, dtype=torch.float64)
        self.b = torch.randn(max(num_classes, 1), data_dim, generator=g, dtype=torch.float64)
        self.noise = noise
        self.num_classes = num_classes
        self.conditional = num_classes > 0
        self.latent_dim = latent_dim
        self.shift = posterior_shift
        eye = torch.eye(latent_dim, dtype=torch.float64)
        self.post_cov = torch.linalg.inv(eye + self.W.T @ self.W / noise**2)

    def _bias(self, y):
        return self.b[0] if y is None else self.b[y]

    def prior(self):
        return Independent(Normal(torch.zeros(self.latent_dim, dtype=torch.float64),
                                  torch.ones(self.latent_dim, dtype=torch.float64)), 1)

    def decoder(self, z, y=None):
        return Independent(Normal(z @ self.W.T + self._bias(y), self.noise), 1)

    def encoder(self, x, y=None):
        mean = (x - self._bias(y)) @ self.W @ self.post_cov / self.noise**2 + self.shift
        if self.shift == 0.0:  # the exact posterior (full covariance)
            return MultivariateNormal(mean, covariance_matrix=self.post_cov.expand(mean.shape[0], -1, -1))
        # a wrong q on purpose: shifted, and isotropic wider than the posterior (a proposal IS can use)
        scale = 1.5 * torch.linalg.eigvalsh(self.post_cov).max().sqrt()
        return Independent(Normal(mean, scale.expand(self.latent_dim)), 1)

    def exact_log_likelihood(self, x, y=None):
        cov = self.W @ self.W.T + self.noise**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return MultivariateNormal(self._bias(y), covariance_matrix=cov).log_prob(x)

    def class_log_prior(self):
        return torch.full((self.num_classes,), -math.log(self.num_classes), dtype=torch.float64)


def _rsample_mvn(dist, shape, generator):
    eps = torch.randn(torch.Size(shape) + dist.loc.shape, generator=generator, dtype=dist.loc.dtype)
    return dist.loc + (dist.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)


@pytest.fixture(autouse=True)
def _mvn_sampling(monkeypatch):
    """Teach rsample the full-covariance Gaussian used as the exact posterior in these tests."""
    original = objectives.rsample

    def rsample(dist, shape, generator):
        if isinstance(dist, MultivariateNormal):
            return _rsample_mvn(dist, shape, generator)
        return original(dist, shape, generator)

    monkeypatch.setattr(objectives, "rsample", rsample)


def test_analytic_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 6, generator=g, dtype=torch.float64)
    sigma = torch.rand(4, 6, generator=g, dtype=torch.float64) + 0.3
    q = Independent(Normal(mu, sigma), 1)
    prior = Independent(Normal(torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)), 1)
    analytic = objectives.kl_to_prior(q, prior)
    formula = 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2)).sum(-1)
    torch.testing.assert_close(analytic, formula)
    z = objectives.rsample(q, (200_000,), g)
    log_ratio = q.log_prob(z) - prior.log_prob(z)
    standard_error = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((log_ratio.mean(0) - analytic).abs() < 4 * standard_error)


def test_importance_sampling_with_exact_posterior_is_exact():
    model = LinearGaussian()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = model.exact_log_likelihood(x)
    g = torch.Generator().manual_seed(2)
    # with q = p(z | x) every importance weight equals p(x): any K and chunking give log p(x) exactly
    for samples, chunk in [(1, 1), (10, 3), (1000, 250)]:
        estimate = objectives.log_likelihood_is(model, x, None, samples, g, chunk=chunk)
        torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-9)
    torch.testing.assert_close(objectives.iw_bound(model, x, None, 5, g), exact, rtol=0, atol=1e-9)


def test_bounds_are_ordered_and_converge_with_a_wrong_posterior():
    model = LinearGaussian(posterior_shift=0.7)
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = model.exact_log_likelihood(x).mean().item()
    g = torch.Generator().manual_seed(4)
    elbo = objectives.elbo(model, x, None, samples=100, generator=g).elbo.mean().item()
    iw5 = objectives.iw_bound(model, x, None, 5, g).mean().item()
    is_estimate = objectives.log_likelihood_is(model, x, None, 5000, g, chunk=500).mean().item()
    assert elbo < iw5 - 0.05 < is_estimate - 0.05  # strictly tighter with more samples
    assert abs(is_estimate - exact) < 0.02  # the IS estimate converges to the true log p(x)
    assert is_estimate <= exact + 0.01  # a lower bound (in expectation)
    # the ELBO's gap is the KL from q to the true posterior: positive and substantial here
    assert exact - elbo > 0.1


def test_elbo_terms_add_up_and_match_the_iw_bound_with_one_sample():
    model = LinearGaussian(posterior_shift=0.3)
    x = torch.randn(500, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    terms = objectives.elbo(model, x, None, samples=50, generator=g)
    torch.testing.assert_close(terms.elbo, terms.recon - terms.kl)
    assert torch.all(terms.kl > 0)
    iw1 = objectives.iw_bound(model, x, None, 1, g)
    # same quantity, analytic vs Monte-Carlo KL: equal means within noise
    diff = (iw1 - terms.elbo)
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(len(diff))


def test_marginal_likelihood_and_classification_from_conditionals():
    model = LinearGaussian(num_classes=3, posterior_shift=0.0)
    g = torch.Generator().manual_seed(7)
    y_true = torch.tensor([0, 1, 2, 1, 0, 2])
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    x = model.decoder(z, y_true).sample()
    per_class = objectives.log_likelihood_per_class(model, x, samples=4, generator=g)
    exact_per_class = torch.stack([model.exact_log_likelihood(x, torch.full((6,), c)) for c in range(3)], -1)
    torch.testing.assert_close(per_class, exact_per_class, rtol=0, atol=1e-9)
    log_pi = model.class_log_prior()
    marginal = objectives.log_marginal_likelihood(per_class, log_pi)
    by_hand = torch.log(sum(torch.exp(exact_per_class[:, c]) / 3 for c in range(3)))
    torch.testing.assert_close(marginal, by_hand)
    assert torch.all(marginal >= exact_per_class.max(-1).values + math.log(1 / 3) - 1e-12)
    torch.testing.assert_close(objectives.classify(per_class, log_pi), exact_per_class.argmax(-1))


def test_rsample_is_reproducible_and_differentiable():
    mu = torch.zeros(3, requires_grad=True)
    q = Independent(Normal(mu, torch.ones(3)), 1)
    a = objectives.rsample(q, (4,), torch.Generator().manual_seed(0))
    b = objectives.rsample(q, (4,), torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (4, 3)
    a.sum().backward()
    assert torch.equal(mu.grad, torch.full((3,), 4.0))


def test_rsample_continuous_bernoulli_matches_its_mean_and_refuses_the_unknown():
    from torch.distributions import ContinuousBernoulli, Exponential

    logits = torch.tensor([-3.0, 0.5, 2.0])
    dist = Independent(ContinuousBernoulli(logits=logits), 1)
    draws = objectives.rsample(dist, (100_000,), torch.Generator().manual_seed(0))
    assert draws.min() >= 0 and draws.max() <= 1
    torch.testing.assert_close(draws.mean(0), dist.base_dist.mean, atol=0.005, rtol=0)
    with pytest.raises(TypeError, match="cannot draw from Exponential"):
        objectives.rsample(Exponential(torch.ones(2)), (3,), None)


def test_prefix_estimates_use_the_first_n_of_one_sequence_of_draws():
    model = LinearGaussian(num_classes=3, posterior_shift=0.4)  # a wrong q: every estimate is noisy
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    k, n, chunk = 10, 4, 2
    long, short = objectives.log_likelihood_prefixes(model, x, y, (k, n), torch.Generator().manual_seed(9), chunk)
    g = torch.Generator().manual_seed(9)
    q = model.encoder(x, y)
    z = torch.cat([objectives.rsample(q, (chunk,), g) for _ in range(k // chunk)])  # the same draws, by hand
    log_w = model.decoder(z, y).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(long, torch.logsumexp(log_w, 0) - math.log(k), rtol=0, atol=1e-12)
    torch.testing.assert_close(short, torch.logsumexp(log_w[:n], 0) - math.log(n), rtol=0, atol=1e-12)
    alone = objectives.log_likelihood_is(model, x, y, k, torch.Generator().manual_seed(9), chunk)
    torch.testing.assert_close(alone, long, rtol=0, atol=0)


def test_per_class_estimates_keep_what_is_known_and_draw_the_other_classes():
    model = LinearGaussian(num_classes=3, posterior_shift=0.0)  # exact posterior: every estimate exact
    g = torch.Generator().manual_seed(10)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    x = model.decoder(torch.randn(6, 3, generator=g, dtype=torch.float64), y).sample()
    exact = torch.stack([model.exact_log_likelihood(x, torch.full((6,), c)) for c in range(3)], -1)
    marker = torch.arange(6, dtype=torch.float64) - 100.0  # not an estimate: shows where "known" lands
    shared = objectives.log_likelihood_per_class(model, x, 4, g, chunk=3, known=(y, marker))
    torch.testing.assert_close(shared.gather(1, y[:, None]).squeeze(1), marker, rtol=0, atol=0)
    others = torch.ones_like(shared, dtype=torch.bool).scatter_(1, y[:, None], False)
    torch.testing.assert_close(shared[others], exact[others], rtol=0, atol=1e-9)


class CountingLinearGaussian(LinearGaussian):
    """A class-conditional vaelab model (the whole interface) that counts decoder evaluations."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = (1, 1, self.W.shape[0])  # images x are [batch, 5] here; the decoder ignores this
        self.evaluations = 0

    def equations(self):
        return ["p(x | z, y) = N(W z + b_y, s^2 I)"]

    def decoder(self, z, y=None):
        self.evaluations += z.shape[:-1].numel()
        return super().decoder(z, y)


def test_evaluation_shares_the_true_class_draws_and_stays_exact():
    from vaelab.evaluate import decoder_passes, evaluate_model
    from vaelab.training import DeviceSplit

    model = CountingLinearGaussian(num_classes=3, posterior_shift=0.0)
    g = torch.Generator().manual_seed(11)
    y = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1, 0, 0])
    x = model.decoder(torch.randn(10, 3, generator=g, dtype=torch.float64), y).sample()
    model.evaluations = 0
    result = evaluate_model(model, DeviceSplit(x=x, y=y, binary=False), iw_samples=8, class_samples=3,
                            batch_size=4, compile="off")
    exact = torch.stack([model.exact_log_likelihood(x, torch.full((10,), c)) for c in range(3)], -1)
    assert result["log_likelihood"] == pytest.approx(exact.gather(1, y[:, None]).mean().item(), abs=1e-9)
    marginal = torch.logsumexp(exact + model.class_log_prior(), -1).mean().item()
    assert result["log_likelihood_marginal"] == pytest.approx(marginal, abs=1e-9)
    assert result["accuracy"] == pytest.approx((exact.argmax(-1) == y).double().mean().item())
    # one ELBO draw, the true class's 8 draws (its per-class 3 among them), 3 for each other class
    assert decoder_passes(model, 8, 3) == 8 + 3 * 2
    assert model.evaluations == 10 * (1 + decoder_passes(model, 8, 3))
