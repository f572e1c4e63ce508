"""The estimators against exact values: the Gaussian KL and densities against torch, and two linear-
Gaussian models written to the `Model` interface whose log p(x) and true posterior are known in closed
form (one latent z, and a two-layer hierarchy z2 -> z1 -> x), so the bounds and IS estimates of
`vaelab.inference` can be checked exactly. Everything is float64; every draw has its own seeded
torch.Generator. Images are [*batch, 1, 1, D] as the interface has them (D "pixels")."""

import math

import pytest
import torch
from torch.distributions import ContinuousBernoulli, Exponential, Independent, MultivariateNormal, Normal, kl_divergence

from vaelab import inference
from vaelab.runtime.devices import DeviceSplit
from vaelab.inference.evaluation import decoder_passes, evaluate_model
from vaelab.models import ClassConditional, Densities, Family, Model, Noise, class_conditional, rsample
from vaelab.models.priors import gaussian_kl, gaussian_log_density

F64 = torch.float64


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def draw(mean, tril, noise):
    """z = mean + L eps for L [*batch, d, d] and eps = noise [samples, *batch, d]."""
    return mean + torch.einsum("...ij,...j->...i", tril, noise)


def normal(loc, scale, event_dims):  # N(loc, scale^2 I) without argument checks: they cost more than it
    return Independent(Normal(loc, scale, validate_args=False), event_dims, validate_args=False)


def simulate(model, count, generator, y=None):  # images x ~ p(x[ | y]) from the model itself: [count, 1, 1, D]
    return rsample(model.decoder(model.sample_codes(count, generator), y), (), generator)


def standard_log_density(z):  # log N(z; 0, I)
    return -(0.5 * z.pow(2) + 0.5 * math.log(2 * math.pi)).sum(-1)


class LinearGaussian(Family):
    """p(z) = N(0, I_d), p(x | z[, y]) = N(W z + b_y, s^2 I_D); q is the exact posterior, a full-covariance
    Gaussian drawn as mean + L eps, or (shift != 0) a wrong one: shifted, isotropic and wider than the
    posterior (a proposal IS can use). analytic=False: no closed-form KL (the ELBO estimates it at the draw)."""

    def __init__(self, data_dim=5, latent_dim=3, noise=0.5, shift=0.0, analytic=True, classes=1, seed=0):
        super().__init__()
        g = seeded(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=g, dtype=F64)
        self.b = torch.randn(classes, data_dim, generator=g, dtype=F64)
        self.s, self.shift, self.analytic = noise, shift, analytic
        self.image_shape, self.code_dim = (1, 1, data_dim), latent_dim
        self.post_cov = torch.linalg.inv(torch.eye(latent_dim, dtype=F64) + self.W.T @ self.W / noise**2)
        wide = 1.5 * torch.linalg.eigvalsh(self.post_cov).max().sqrt() * torch.eye(latent_dim, dtype=F64)
        self.tril = torch.linalg.cholesky(self.post_cov) if shift == 0.0 else wide

    def _bias(self, y):  # a family without a class label ignores y
        return self.b[0]

    def noise_shape(self, labelled=True):
        return (self.code_dim,)

    def posterior(self, x, y=None):
        mean = (x.flatten(-3) - self._bias(y)) @ self.W @ self.post_cov / self.s**2 + self.shift
        return mean, self.tril.expand(*mean.shape, self.code_dim)

    def densities(self, x, y, posterior, noise, closed_form=False):
        mean, tril = posterior
        z, log_q = draw(mean, tril, noise), gaussian_log_density(noise, tril.diagonal(dim1=-2, dim2=-1))
        log_px = self.decoder(z, y).log_prob(x)
        if not (closed_form and self.analytic):
            return Densities(log_px, {"kl": log_q - standard_log_density(z)})
        # KL(N(m, L L^T) || N(0, I)) = (tr L L^T + |m|^2 - d) / 2 - log det L
        trace, log_det = tril.pow(2).sum((-2, -1)), tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return Densities(log_px, {"kl": 0.5 * (trace + mean.pow(2).sum(-1) - self.code_dim) - log_det})

    def code(self, x, y=None):
        return self.posterior(x, y)[0]

    def decoder(self, code, y=None):
        return normal((code @ self.W.T + self._bias(y)).unflatten(-1, self.image_shape), self.s, 3)

    def sample_codes(self, count, generator):
        return torch.randn(count, self.code_dim, generator=generator, dtype=F64)

    def part_words(self):
        return {"recon": "E_q[log p(x | z)]", "kl": "KL(q(z | x) ‖ p(z))"}

    def equations(self):
        return ["z ~ N(0, I)", "x | z, y ~ N(W z + b_y, s² I)"]

    def exact_log_likelihood(self, x, y=None):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.W.shape[0], dtype=F64)
        return MultivariateNormal(self._bias(y), covariance_matrix=cov).log_prob(x.flatten(-3))


class ConditionalLinearGaussian(LinearGaussian):
    """The same with a class label y ~ Uniform(classes), which shifts the mean of x: a `ClassConditional`."""

    def __init__(self, num_classes=3, **settings):
        super().__init__(classes=num_classes, **settings)
        self.num_classes = num_classes

    def _bias(self, y):
        return self.b[y]

    def class_log_prior(self):
        return torch.full((self.num_classes,), -math.log(self.num_classes), dtype=F64)

    def exact_per_class(self, x):
        return torch.stack([self.exact_log_likelihood(x, torch.full(x.shape[:1], c))
                            for c in range(self.num_classes)], -1)


def test_the_test_models_declare_the_interface():
    plain, conditional, hierarchy = LinearGaussian(), ConditionalLinearGaussian(), TwoLayerLinearGaussian()
    assert all(isinstance(model, Model) for model in (plain, conditional, hierarchy))
    assert isinstance(conditional, ClassConditional) and class_conditional(conditional)
    assert not class_conditional(plain) and not class_conditional(hierarchy)


def test_gaussian_kl_and_log_density_match_torch_and_monte_carlo():
    g = seeded(0)
    mu, p_loc = torch.randn(2, 4, 6, generator=g, dtype=F64)
    sigma, p_scale = torch.rand(2, 4, 6, generator=g, dtype=F64) + 0.3
    kl = gaussian_kl(mu, sigma, p_loc, p_scale)
    torch.testing.assert_close(kl, kl_divergence(Normal(mu, sigma), Normal(p_loc, p_scale)).sum(-1))
    standard = gaussian_kl(mu, sigma, torch.zeros(6, dtype=F64), torch.ones(6, dtype=F64))
    torch.testing.assert_close(standard, 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2)).sum(-1))
    eps = torch.randn(40_000, 4, 6, generator=g, dtype=F64)
    z = mu + sigma * eps
    log_q = gaussian_log_density(eps, sigma)  # from the noise alone, as the families use it
    torch.testing.assert_close(log_q[:10], Normal(mu, sigma).log_prob(z[:10]).sum(-1))
    log_ratio = log_q - normal(p_loc, p_scale, 1).log_prob(z)
    standard_error = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((log_ratio.mean(0) - kl).abs() < 4 * standard_error)  # a 4-sigma band: fails ~1e-4 of seeds


def test_importance_sampling_with_exact_posterior_is_exact():
    model, g = LinearGaussian(), seeded(2)
    x = simulate(model, 7, seeded(1))
    exact = model.exact_log_likelihood(x)
    # with q = p(z | x) every importance weight equals p(x): any K and chunking give log p(x), to rounding
    for samples, chunk in [(1, 1), (10, 3), (1000, 250)]:
        estimate = inference.log_likelihood_is(model, x, None, samples, g, chunk=chunk)
        torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-9)
    noise = inference.draw_noise(model, 5, 7, g, "cpu", F64)
    log_w = inference.log_weight(model.densities(x, None, model.posterior(x), noise))
    torch.testing.assert_close(log_w, exact.expand(5, -1), rtol=0, atol=1e-9)  # every draw
    torch.testing.assert_close(inference.iw_bound(model, x, None, noise).bound, exact, rtol=0, atol=1e-9)


def test_bounds_are_ordered_and_converge_with_a_wrong_posterior():
    model, g = LinearGaussian(shift=0.2), seeded(4)
    x = simulate(model, 100, seeded(3))
    exact = model.exact_log_likelihood(x).mean().item()
    elbo = inference.elbo(model, x, None, inference.draw_noise(model, 100, 100, g, "cpu", F64)).bound.mean().item()
    iw5 = inference.iw_bound(model, x, None, inference.draw_noise(model, 5, 100, g, "cpu", F64)).bound.mean().item()
    is_estimate = inference.log_likelihood_is(model, x, None, 5000, g, chunk=1000).mean().item()
    # measured (10 seeds): gaps of ~9 nats (ELBO: q is 1.5-4x wider than p(z | x)), 0.9-1.7 (IW 5), and
    # IS errors within 0.007 of either sign
    assert elbo < iw5 - 1 < is_estimate - 1.5  # strictly tighter with more samples
    assert abs(is_estimate - exact) < 0.02  # the IS estimate converges to the true log p(x)
    assert is_estimate <= exact + 0.01  # a lower bound (in expectation)
    assert exact - elbo > 5  # the ELBO's gap is KL(q || p(z | x)): positive and substantial here


def test_elbo_parts_add_up_and_match_the_iw_bound_with_one_sample():
    model, g = LinearGaussian(shift=0.3), seeded(6)
    x = simulate(model, 500, seeded(5))
    terms = inference.elbo(model, x, None, inference.draw_noise(model, 50, 500, g, "cpu", F64), kl_weight=0.25)
    assert set(terms.parts) == set(model.part_words()) == {"recon", "kl"}
    torch.testing.assert_close(terms.bound, terms.parts["recon"] - terms.parts["kl"], rtol=0, atol=1e-12)
    torch.testing.assert_close(terms.maximised, terms.parts["recon"] - 0.25 * terms.parts["kl"], rtol=0, atol=1e-12)
    assert torch.all(terms.parts["kl"] > 0)
    one = inference.draw_noise(model, 1, 500, g, "cpu", F64)
    iw1, elbo1 = inference.iw_bound(model, x, None, one), inference.elbo(model, x, None, one)
    torch.testing.assert_close(iw1.maximised, iw1.bound)  # kl_weight = 1: the bound itself is maximised
    torch.testing.assert_close(iw1.parts["recon"], elbo1.parts["recon"], rtol=0, atol=0)  # the same draw
    # the same quantity, closed-form vs Monte-Carlo KL: equal means within a 4-sigma band
    diff = iw1.bound - elbo1.bound
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(len(diff))
    # without a closed-form KL, the ELBO with one draw is the IW bound with k = 1, draw for draw
    sampled = LinearGaussian(shift=0.3, analytic=False)
    torch.testing.assert_close(inference.elbo(sampled, x, None, one).bound,
                               inference.iw_bound(sampled, x, None, one).bound)
    # Family's default objective: the given bound with every label known, and no label to sum out
    via_objective = model.objective(x, None, Noise(None, one), inference.elbo)
    torch.testing.assert_close(via_objective.bound, elbo1.bound, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no classifier"):
        model.objective(x, None, Noise(one, None), inference.elbo)


def test_marginal_likelihood_and_classification_from_conditionals():
    model, g = ConditionalLinearGaussian(), seeded(7)
    y_true = torch.tensor([0, 1, 2, 1, 0, 2])
    x = simulate(model, 6, g, y_true)
    per_class = inference.log_likelihood_per_class(model, x, samples=4, generator=g)
    exact_per_class = model.exact_per_class(x)
    torch.testing.assert_close(per_class, exact_per_class, rtol=0, atol=1e-9)  # exact q: exact to rounding
    log_pi = model.class_log_prior()
    marginal = inference.log_marginal_likelihood(per_class, log_pi)
    torch.testing.assert_close(marginal, torch.log(sum(torch.exp(exact_per_class[:, c]) / 3 for c in range(3))))
    assert torch.all(marginal >= exact_per_class.max(-1).values + math.log(1 / 3) - 1e-12)
    torch.testing.assert_close(inference.classify(per_class, log_pi), exact_per_class.argmax(-1))


def test_rsample_is_reproducible_and_differentiable():
    mu = torch.zeros(3, requires_grad=True)
    q = Independent(Normal(mu, torch.ones(3)), 1)
    a, b = rsample(q, (4,), seeded(0)), rsample(q, (4,), seeded(0))
    assert torch.equal(a, b) and a.shape == (4, 3)
    # the same numbers as base noise from draw_noise with that generator (a Gaussian family's loc + scale * eps)
    assert torch.equal(a, inference.draw_noise(LinearGaussian(), 4, (), seeded(0), "cpu", torch.float32))
    a.sum().backward()
    assert torch.equal(mu.grad, torch.full((3,), 4.0))


def test_rsample_continuous_bernoulli_matches_its_mean_and_refuses_the_unknown():
    logits = torch.tensor([-3.0, 0.5, 2.0])
    dist = Independent(ContinuousBernoulli(logits=logits), 1)
    draws = rsample(dist, (100_000,), seeded(0))
    assert draws.min() >= 0 and draws.max() <= 1
    # standard deviation of a mean of 1e5 draws is at most 0.29 / 316 < 0.001: 0.005 is over 5 sigma
    torch.testing.assert_close(draws.mean(0), dist.base_dist.mean, atol=0.005, rtol=0)
    with pytest.raises(TypeError, match="cannot draw from Exponential"):
        rsample(Exponential(torch.ones(2)), (3,), None)


def test_prefix_estimates_use_the_first_n_of_one_sequence_of_draws():
    model = ConditionalLinearGaussian(shift=0.4)  # a wrong q: every estimate is noisy
    y = torch.tensor([0, 2, 1, 2])
    x = simulate(model, 4, seeded(8), y)
    k, n, chunk, g = 10, 4, 2, seeded(9)
    long, short = inference.log_likelihood_prefixes(model, x, y, (k, n), seeded(9), chunk)
    eps = torch.cat([inference.draw_noise(model, chunk, 4, g, "cpu", F64) for _ in range(k // chunk)])
    mean, tril = model.posterior(x, y)
    z, q = draw(mean, tril, eps), MultivariateNormal(mean, scale_tril=tril)  # the same draws, by hand, torch's q
    log_w = model.decoder(z, y).log_prob(x) + standard_log_density(z) - q.log_prob(z)
    torch.testing.assert_close(long, torch.logsumexp(log_w, 0) - math.log(k), rtol=0, atol=1e-12)
    torch.testing.assert_close(short, torch.logsumexp(log_w[:n], 0) - math.log(n), rtol=0, atol=1e-12)
    alone = inference.log_likelihood_is(model, x, y, k, seeded(9), chunk)
    torch.testing.assert_close(alone, long, rtol=0, atol=0)


def test_per_class_estimates_keep_what_is_known_and_draw_the_other_classes():
    model, g = ConditionalLinearGaussian(), seeded(10)  # exact posterior: every estimate exact
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    x = simulate(model, 6, g, y)
    exact = model.exact_per_class(x)
    marker = torch.arange(6, dtype=F64) - 100.0  # not an estimate: shows where "known" lands
    shared = inference.log_likelihood_per_class(model, x, 4, g, chunk=3, known=(y, marker))
    torch.testing.assert_close(shared.gather(1, y[:, None]).squeeze(1), marker, rtol=0, atol=0)
    others = torch.ones_like(shared, dtype=torch.bool).scatter_(1, y[:, None], False)
    torch.testing.assert_close(shared[others], exact[others], rtol=0, atol=1e-9)


class CountingLinearGaussian(ConditionalLinearGaussian):
    evaluations = 0  # decoder evaluations, image x draw pairs

    def decoder(self, code, y=None):
        self.evaluations += code.shape[:-1].numel()
        return super().decoder(code, y)


def test_evaluation_shares_the_true_class_draws_and_stays_exact():
    model = CountingLinearGaussian()
    y = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1, 0, 0])
    x = simulate(model, 10, seeded(11), y)
    model.evaluations = 0
    result = evaluate_model(model, DeviceSplit(x=x, y=y, binary=False), iw_samples=8, class_samples=3,
                            batch_size=4, compile="off")
    exact = model.exact_per_class(x)
    assert result["log_likelihood"] == pytest.approx(exact.gather(1, y[:, None]).mean().item(), abs=1e-9)
    marginal = torch.logsumexp(exact + model.class_log_prior(), -1).mean().item()
    assert result["log_likelihood_marginal"] == pytest.approx(marginal, abs=1e-9)
    assert result["accuracy"] == pytest.approx((exact.argmax(-1) == y).double().mean().item())
    assert result["elbo"] == pytest.approx(result["recon"] - result["kl"], abs=1e-9)
    # one ELBO draw, the true class's 8 draws (its per-class 3 among them), 3 for each other class
    assert decoder_passes(model, 8, 3) == 8 + 3 * 2
    assert model.evaluations == 10 * (1 + decoder_passes(model, 8, 3))


class TwoLayerLinearGaussian(Family):
    """p(z2) = N(0, I), p(z1 | z2) = N(A z2 + a, t^2 I), p(x | z1) = N(W z1 + b, s^2 I).

    (z1, z2, x) is jointly Gaussian, so q(z1, z2 | x) = p(z1, z2 | x) by conditioning; it is drawn as
    u = mean + L eps with L the Cholesky factor of its covariance in the order (z1, z2), which factorises
    it as q(z1 | x) = N(m1, L11 L11^T), z1 from eps1, times q(z2 | z1, x) = N(m2 + L21 eps1, L22 L22^T).
    A wrong q (shift, widen): the mean moved by `shift` in every coordinate, L multiplied by `widen`.
    """

    def __init__(self, data_dim=6, dims=(3, 2), noise=0.5, middle=0.7, shift=0.0, widen=1.0, seed=0):
        super().__init__()
        (d1, d2), D, g = dims, data_dim, seeded(seed)
        self.A, self.a = torch.randn(d1, d2, generator=g, dtype=F64), torch.randn(d1, generator=g, dtype=F64)
        self.W, self.b = torch.randn(D, d1, generator=g, dtype=F64), torch.randn(D, generator=g, dtype=F64)
        self.s, self.t, self.d1, self.image_shape, self.code_dim = noise, middle, d1, (1, 1, D), d1
        # (z1, z2, x) = M (e1, e2, ex) + mean for (e1, e2, ex) ~ N(0, I): z1 = A z2 + a + t e1, x = W z1 + b + s ex
        eye, zeros = (lambda n: torch.eye(n, dtype=F64)), (lambda r, c: torch.zeros(r, c, dtype=F64))
        M = torch.cat([torch.cat([middle * eye(d1), self.A, zeros(d1, D)], 1),
                       torch.cat([zeros(d2, d1), eye(d2), zeros(d2, D)], 1),
                       torch.cat([middle * self.W, self.W @ self.A, noise * eye(D)], 1)])
        cov, u, o = M @ M.T, slice(0, d1 + d2), slice(d1 + d2, None)
        self.mean_u, self.mean_x = torch.cat([self.a, torch.zeros(d2, dtype=F64)]), self.W @ self.a + self.b
        self.gain = cov[u, o] @ torch.linalg.inv(cov[o, o])  # conditioning: Σ_ux Σ_xx^-1
        self.post_cov = cov[u, u] - self.gain @ cov[o, u]  # Σ_uu - Σ_ux Σ_xx^-1 Σ_xu
        self.tril, self.shift = widen * torch.linalg.cholesky(self.post_cov), shift

    def noise_shape(self, labelled=True):
        return (self.d1 + self.A.shape[1],)

    def posterior(self, x, y=None):
        mean = self.mean_u + (x.flatten(-3) - self.mean_x) @ self.gain.T + self.shift
        return mean, self.tril.expand(*mean.shape, mean.shape[-1])

    def densities(self, x, y, posterior, noise, closed_form=False):  # no closed form: parts at the draw
        (mean, tril), d1 = posterior, self.d1
        z, diagonal = draw(mean, tril, noise), tril.diagonal(dim1=-2, dim2=-1)
        z1, z2 = z[..., :d1], z[..., d1:]
        log_q1 = gaussian_log_density(noise[..., :d1], diagonal[..., :d1])  # log q(z1 | x)
        log_q2 = gaussian_log_density(noise[..., d1:], diagonal[..., d1:])  # log q(z2 | z1, x)
        kl_z1 = log_q1 - normal(z2 @ self.A.T + self.a, self.t, 1).log_prob(z1)
        return Densities(self.decoder(z1).log_prob(x), {"kl_z1": kl_z1, "kl_z2": log_q2 - standard_log_density(z2)})

    def code(self, x, y=None):
        return self.posterior(x)[0][..., : self.d1]

    def decoder(self, code, y=None):
        return normal((code @ self.W.T + self.b).unflatten(-1, self.image_shape), self.s, 3)

    def sample_codes(self, count, generator):  # z1 by ancestral sampling
        z2 = torch.randn(count, self.A.shape[1], generator=generator, dtype=F64)
        return z2 @ self.A.T + self.a + self.t * torch.randn(count, self.d1, generator=generator, dtype=F64)

    def part_words(self):
        return {"recon": "E_q[log p(x | z1)]", "kl_z1": "q(z1 | x) ‖ p(z1 | z2)", "kl_z2": "q(z2 | z1, x) ‖ p(z2)"}

    def equations(self):
        return ["z2 ~ N(0, I)", "z1 | z2 ~ N(A z2 + a, t² I)", "x | z1 ~ N(W z1 + b, s² I)"]

    def exact_log_likelihood(self, x):  # x ~ N(W a + b, W (A A^T + t^2 I) W^T + s^2 I)
        cov_z1 = self.A @ self.A.T + self.t**2 * torch.eye(self.d1, dtype=F64)
        cov = self.W @ cov_z1 @ self.W.T + self.s**2 * torch.eye(self.W.shape[0], dtype=F64)
        return MultivariateNormal(self.W @ self.a + self.b, covariance_matrix=cov).log_prob(x.flatten(-3))


def test_hierarchy_with_its_true_posterior_has_a_constant_weight():
    model = TwoLayerLinearGaussian()
    x = simulate(model, 20, seeded(12))
    exact = model.exact_log_likelihood(x)
    noise = inference.draw_noise(model, 64, 20, seeded(13), "cpu", F64)  # [64, 20, d1 + d2]
    mean, tril = model.posterior(x)
    densities = model.densities(x, None, (mean, tril), noise)
    # the parts are the factorised posterior's: kl_z1 + log p(z1 | z2) is the marginal log q(z1 | x)
    z1, z2 = draw(mean, tril, noise).split([3, 2], -1)
    log_q1 = MultivariateNormal(mean[..., :3], scale_tril=tril[..., :3, :3]).log_prob(z1)
    log_p1 = Normal(z2 @ model.A.T + model.a, model.t).log_prob(z1).sum(-1)
    torch.testing.assert_close(densities.kl["kl_z1"] + log_p1, log_q1)  # and kl_z2, by the sum below
    # every draw's log weight is log p(x) (to rounding: float64 linear algebra on 6 x 6 matrices)
    torch.testing.assert_close(inference.log_weight(densities), exact.expand(64, -1), rtol=0, atol=1e-9)
    terms = inference.elbo(model, x, None, noise)
    assert set(terms.parts) == set(model.part_words())
    torch.testing.assert_close(terms.bound, exact, rtol=0, atol=1e-9)  # the ELBO is tight: KL(q || p(z | x)) = 0
    parts = terms.parts["recon"] - terms.parts["kl_z1"] - terms.parts["kl_z2"]
    torch.testing.assert_close(terms.bound, parts, rtol=0, atol=1e-12)
    torch.testing.assert_close(inference.iw_bound(model, x, None, noise[:5]).bound, exact, rtol=0, atol=1e-9)
    torch.testing.assert_close(inference.log_likelihood_is(model, x, None, 100, seeded(14), chunk=30), exact,
                               rtol=0, atol=1e-9)
    result = evaluate_model(model, DeviceSplit(x=x, y=torch.zeros(20, dtype=torch.int64), binary=False),
                            iw_samples=10, batch_size=8, compile="off")  # the evaluation reads its parts by name
    assert result["elbo"] == pytest.approx(exact.mean().item(), abs=1e-9) == result["log_likelihood"]
    assert result["recon"] - result["kl_z1"] - result["kl_z2"] == pytest.approx(result["elbo"], abs=1e-9)


def test_hierarchy_bounds_converge_to_its_closed_form_with_a_wrong_posterior():
    model, g = TwoLayerLinearGaussian(shift=0.2, widen=1.2), seeded(16)
    x = simulate(model, 50, seeded(15))
    exact = model.exact_log_likelihood(x)
    noise = inference.draw_noise(model, 100, 50, g, "cpu", F64)
    elbo = inference.elbo(model, x, None, noise).bound
    # its gap is KL(N(m + δ, c² Σ) || N(m, Σ)) = (d c² + δ' Σ^-1 δ - d) / 2 - d log c, the same for every x,
    # so the 5,000 gaps at the draws are i.i.d.: their mean is within 4 standard errors of it
    d, shift = 5, torch.full((5,), 0.2, dtype=F64)
    kl = 0.5 * (d * 1.2**2 + shift @ torch.linalg.solve(model.post_cov, shift) - d) - d * math.log(1.2)
    gaps = exact - inference.log_weight(model.densities(x, None, model.posterior(x), noise))
    assert abs(gaps.mean().item() - kl.item()) < 4 * gaps.std().item() / math.sqrt(gaps.numel())
    torch.testing.assert_close(elbo.mean(), gaps.mean().neg() + exact.mean())  # the ELBO is their mean
    iw5 = inference.iw_bound(model, x, None, inference.draw_noise(model, 5, 50, g, "cpu", F64)).bound.mean().item()
    estimates = inference.log_likelihood_prefixes(model, x, None, (100, 1000, 10_000), g, chunk=1000)
    is_100, is_1000, is_large = [(e.mean() - exact.mean()).item() for e in estimates]
    elbo, iw5 = elbo.mean().item() - exact.mean().item(), iw5 - exact.mean().item()
    # measured here (10 seeds): gaps ~1.75 (ELBO), 0.25-0.65 (IW 5); IS errors within 0.05 (K = 100),
    # 0.012 (K = 1,000) and 0.005 (K = 10,000) of the closed form, of either sign
    assert elbo < iw5 - 0.5 and iw5 < is_large - 0.1  # each bound clearly tighter
    assert abs(is_100) < 0.1 and abs(is_1000) < 0.03 and abs(is_large) < 0.02  # IS converges to log p(x)
    assert is_large <= 0.01  # a lower bound in expectation
